"""Loading the user's own image folders and CSV tables (divekit.data.user)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from divekit.data.user import (
    UserDataError,
    apply_column,
    fit_column,
    load_csv_table,
    load_image_folder,
    load_user_data,
)

Image = pytest.importorskip("PIL.Image")


def write_image(path, pixels: np.ndarray, format: str = "PNG") -> None:
    """Write uint8 (H, W) or (H, W, 3) ``pixels`` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=format)


def distinct_pixels(index: int, shape=(4, 5)) -> np.ndarray:
    """A gray image that differs from every other index (the index is in the first pixel)."""
    pixels = np.full(shape, 7, dtype=np.uint8)
    pixels.flat[0] = index
    return pixels


def make_class_folder(root, counts: dict[str, int], shape=(4, 5)):
    """``root/<class>/NN.png`` with ``counts[class]`` distinct gray images; returns the pixels
    written, in loading order (classes sorted, files sorted)."""
    written = []
    index = 0
    for name in sorted(counts):
        for k in range(counts[name]):
            pixels = distinct_pixels(index, shape)
            write_image(root / name / f"{k:02d}.png", pixels)
            written.append(pixels)
            index += 1
    return written


def fingerprints(X: torch.Tensor) -> list[int]:
    return X[:, 0, 0, 0].tolist()


# ---------------------------------------------------------------------------------------------
# Image folders, layout A: PATH/<class>/*


def test_image_folder_shapes_dtypes_and_classes(tmp_path):
    root = tmp_path / "pets"
    make_class_folder(root, {"dog": 5, "cat": 5, "bird": 5})
    data = load_image_folder(root)
    assert data.name == "pets"
    assert data.eval_name == "val"
    assert data.classes == ("bird", "cat", "dog")
    assert data.train.X.dtype == torch.uint8 and data.train.y.dtype == torch.int64
    assert data.input_shape == (1, 4, 5)
    assert len(data.train) + len(data.eval) == 15
    assert len(data.eval) == 3  # one of five per class
    assert set(data.train.y.tolist()) == {0, 1, 2}


def test_png_pixels_round_trip_with_their_labels(tmp_path):
    root = tmp_path / "digits"
    written = make_class_folder(root, {"a": 3, "b": 4})
    data = load_image_folder(root)
    labels_by_index = [0] * 3 + [1] * 4
    for split in (data.train, data.eval):
        for image, label in zip(split.X, split.y):
            index = int(image[0, 0, 0])
            assert torch.equal(image[0], torch.from_numpy(written[index]))
            assert label == labels_by_index[index]


def test_every_image_appears_once_across_train_and_val(tmp_path):
    root = tmp_path / "set"
    make_class_folder(root, {"x": 7, "y": 9, "z": 4})
    data = load_image_folder(root, val_fraction=0.3, seed=3)
    seen = fingerprints(data.train.X) + fingerprints(data.eval.X)
    assert sorted(seen) == list(range(20))


def test_split_is_deterministic_per_seed(tmp_path):
    root = tmp_path / "set"
    make_class_folder(root, {"x": 10, "y": 10})
    first = load_image_folder(root, seed=1)
    again = load_image_folder(root, seed=1)
    other = load_image_folder(root, seed=2)
    assert torch.equal(first.eval.X, again.eval.X) and torch.equal(first.train.y, again.train.y)
    assert fingerprints(first.eval.X) != fingerprints(other.eval.X)


def test_split_is_stratified(tmp_path):
    counts = {"few": 3, "some": 10, "many": 21}
    expected_in_val = {"few": 1, "some": 3, "many": 5}  # a quarter of each class, rounded
    root = tmp_path / "set"
    make_class_folder(root, counts)
    data = load_image_folder(root, val_fraction=0.25)
    for label, name in enumerate(data.classes):
        assert int((data.eval.y == label).sum()) == expected_in_val[name]
        assert int((data.train.y == label).sum()) == counts[name] - expected_in_val[name]


def test_single_image_class_stays_in_train(tmp_path):
    root = tmp_path / "set"
    make_class_folder(root, {"lonely": 1, "crowd": 10})
    data = load_image_folder(root, val_fraction=0.5)
    assert data.train.y.tolist().count(data.classes.index("lonely")) == 1


def test_hidden_and_non_image_files_are_ignored(tmp_path):
    root = tmp_path / "set"
    make_class_folder(root, {"a": 2, "b": 2})
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "a" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / ".hidden_class").mkdir()
    (root / "README.md").write_text("about the data")
    data = load_image_folder(root, val_fraction=0.5)
    assert data.classes == ("a", "b")
    assert len(data.train) + len(data.eval) == 4


def test_image_suffixes_are_case_insensitive_and_jpeg_is_read(tmp_path):
    root = tmp_path / "set"
    for name in ("a", "b"):
        for k in range(2):
            write_image(root / name / f"{k}.JPG", np.full((6, 6, 3), 100, np.uint8), format="JPEG")
    data = load_image_folder(root, val_fraction=0.5)
    assert data.input_shape == (3, 6, 6)
    assert (data.train.X.int() - 100).abs().max() <= 3  # JPEG is lossy, but a flat colour survives
    for name, fmt in (("extra.bmp", "BMP"), ("extra.webp", "WEBP"), ("extra.tif", "TIFF")):  # predict reads these too
        write_image(root / "a" / name, np.full((6, 6, 3), 100, np.uint8), format=fmt)
    (root / "a" / "notes.txt").write_text("not an image")
    data = load_image_folder(root, val_fraction=0.5)
    assert len(data.train) + len(data.eval) == 7  # they were skipped without a word


# ---------------------------------------------------------------------------------------------
# Channels


def test_rgb_images_give_three_channels_in_channel_first_order(tmp_path):
    root = tmp_path / "colour"
    pixels = np.zeros((4, 5, 3), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 10, 20, 30
    for name in ("a", "b"):
        for k in range(2):
            write_image(root / name / f"{k}.png", pixels)
    data = load_image_folder(root, val_fraction=0.5)
    assert data.input_shape == (3, 4, 5)
    assert data.train.X[0, :, 0, 0].tolist() == [10, 20, 30]


def test_mixed_gray_and_colour_become_rgb(tmp_path):
    root = tmp_path / "mixed"
    write_image(root / "a" / "0.png", np.full((4, 4), 50, np.uint8))
    write_image(root / "a" / "1.png", np.full((4, 4), 60, np.uint8))
    write_image(root / "b" / "0.png", np.full((4, 4, 3), 90, np.uint8))
    write_image(root / "b" / "1.png", np.full((4, 4, 3), 95, np.uint8))
    data = load_image_folder(root, val_fraction=0.5)
    everything = torch.cat([data.train.X, data.eval.X])
    assert everything.shape[1] == 3
    gray_ones = everything[everything[:, 0, 0, 0] < 70]
    assert len(gray_ones) == 2
    assert torch.equal(gray_ones[:, 0], gray_ones[:, 1]) and torch.equal(gray_ones[:, 1], gray_ones[:, 2])


def test_rgba_and_palette_images_become_rgb(tmp_path):
    root = tmp_path / "modes"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    Image.new("RGBA", (3, 3), (1, 2, 3, 128)).save(root / "a" / "0.png")
    Image.new("RGB", (3, 3), (4, 5, 6)).save(root / "a" / "1.png")
    palette_image = Image.new("P", (3, 3), 0)
    palette_image.putpalette([4, 5, 6] * 256)
    palette_image.save(root / "b" / "0.png")
    Image.new("RGB", (3, 3), (4, 5, 6)).save(root / "b" / "1.png")
    data = load_image_folder(root, val_fraction=0.5)
    assert data.input_shape == (3, 3, 3)
    everything = torch.cat([data.train.X, data.eval.X])
    assert sorted(everything[:, :, 0, 0].tolist()) == [[1, 2, 3], [4, 5, 6], [4, 5, 6], [4, 5, 6]]


# ---------------------------------------------------------------------------------------------
# Layout B: PATH/train/<class>/ and PATH/test/<class>/


def test_train_test_layout_is_used_as_it_is(tmp_path):
    root = tmp_path / "given"
    make_class_folder(root / "train", {"a": 4, "b": 3})
    make_class_folder(root / "test", {"a": 2, "b": 1})
    data = load_image_folder(root)
    assert data.name == "given"
    assert data.eval_name == "test"
    assert data.classes == ("a", "b")
    assert len(data.train) == 7 and len(data.eval) == 3
    assert data.train.y.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert data.eval.y.tolist() == [0, 0, 1]


def test_train_test_layout_with_different_classes_is_an_error(tmp_path):
    root = tmp_path / "given"
    make_class_folder(root / "train", {"a": 2, "b": 2})
    make_class_folder(root / "test", {"a": 2, "c": 2})
    with pytest.raises(UserDataError, match="same class sub-folders") as error:
        load_image_folder(root)
    assert "'b'" in str(error.value) and "'c'" in str(error.value)


def test_train_without_test_is_an_error(tmp_path):
    root = tmp_path / "half"
    make_class_folder(root / "train", {"a": 2, "b": 2})
    with pytest.raises(UserDataError, match="no .*test"):
        load_image_folder(root)


def test_gray_train_and_colour_test_share_channels(tmp_path):
    root = tmp_path / "given"
    for name in ("a", "b"):
        write_image(root / "train" / name / "0.png", np.full((4, 4), 9, np.uint8))
        write_image(root / "test" / name / "0.png", np.full((4, 4, 3), 9, np.uint8))
    data = load_image_folder(root)
    assert data.train.X.shape[1] == data.eval.X.shape[1] == 3


# ---------------------------------------------------------------------------------------------
# Image folder errors


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(UserDataError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere")


def test_file_instead_of_folder_is_an_error(tmp_path):
    file = tmp_path / "one.png"
    write_image(file, distinct_pixels(0))
    with pytest.raises(UserDataError, match="not a folder"):
        load_image_folder(file)


def test_folder_without_class_sub_folders_is_an_error(tmp_path):
    write_image(tmp_path / "flat" / "0.png", distinct_pixels(0))
    with pytest.raises(UserDataError, match="no class sub-folders"):
        load_image_folder(tmp_path / "flat")


def test_empty_class_folder_is_named(tmp_path):
    root = tmp_path / "set"
    make_class_folder(root, {"a": 2, "b": 2})
    (root / "empty_one").mkdir()
    (root / "empty_one" / "readme.txt").write_text("no images here")
    with pytest.raises(UserDataError, match="'empty_one'.*no .*images"):
        load_image_folder(root)


def test_broken_image_is_named_with_the_reason(tmp_path):
    root = tmp_path / "set"
    make_class_folder(root, {"a": 2, "b": 2})
    (root / "b" / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(UserDataError, match="broken.png") as error:
        load_image_folder(root)
    assert "cannot identify image" in str(error.value)  # Pillow's own reason


def test_truncated_image_is_an_error(tmp_path):
    root = tmp_path / "set"
    make_class_folder(root, {"a": 2, "b": 2})
    whole = (root / "a" / "00.png").read_bytes()
    (root / "a" / "00.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UserDataError, match="00.png"):
        load_image_folder(root)


def test_mixed_sizes_name_two_files_and_their_sizes(tmp_path):
    root = tmp_path / "set"
    make_class_folder(root, {"a": 2, "b": 1})
    write_image(root / "b" / "wide.png", np.zeros((4, 9), np.uint8))
    with pytest.raises(UserDataError, match="pass --resize N to train on N x N images") as error:
        load_image_folder(root)
    message = str(error.value)
    assert "00.png" in message and "5x4" in message
    assert "wide.png" in message and "9x4" in message


def test_with_fit_images_of_several_sizes_are_each_resized_as_a_prediction_resizes_them(tmp_path):
    from divekit.data.user import read_image

    root = tmp_path / "set"
    make_class_folder(root, {"a": 2, "b": 1})
    wide = np.arange(36, dtype=np.uint8).reshape(4, 9) * 7
    write_image(root / "b" / "wide.png", wide)
    data = load_image_folder(root, fit=6, val_fraction=0.3)
    assert data.input_shape == (1, 6, 6)
    images = torch.cat([data.train.X, data.eval.X])
    expected = read_image(root / "b" / "wide.png", mode="L", size=(6, 6))  # what predict reads
    assert any(torch.equal(x, expected) for x in images)
    make_class_folder(tmp_path / "same", {"a": 2, "b": 2})
    assert load_image_folder(tmp_path / "same", fit=6, val_fraction=0.5).input_shape == (1, 4, 5)  # one size: kept


def test_with_stretch_every_image_is_resized_whole_as_the_books_hotdog_pipeline(tmp_path):
    """The book's Resize([256, 256]) (D2L §13.2.1): each image squashed to the square, nothing cut off."""
    root = tmp_path / "set"
    make_class_folder(root, {"a": 2, "b": 1})
    wide = np.zeros((4, 12), np.uint8)
    wide[:, :3] = 200  # the left quarter is bright: a centre crop would lose it
    write_image(root / "b" / "wide.png", wide)
    data = load_image_folder(root, stretch=2, val_fraction=0.3)
    assert data.input_shape == (1, 2, 2)
    reference = torch.from_numpy(np.array(Image.fromarray(wide).resize((2, 2), Image.BILINEAR)))
    images = torch.cat([data.train.X, data.eval.X])
    (match,) = [x for x in images if torch.equal(x[0], reference)]
    assert match[0, :, 0].min() > 0  # the bright quarter is still there
    make_class_folder(tmp_path / "same", {"a": 2, "b": 2})  # images of one size (4 x 5) are stretched too
    assert load_image_folder(tmp_path / "same", stretch=3, val_fraction=0.5).input_shape == (1, 3, 3)


def test_a_single_class_is_an_error(tmp_path):
    root = tmp_path / "set"
    make_class_folder(root, {"only": 3})
    with pytest.raises(UserDataError, match="at least 2 classes"):
        load_image_folder(root)


def test_sixteen_bit_images_are_an_error_not_silently_clipped(tmp_path):
    root = tmp_path / "set"
    make_class_folder(root, {"a": 2, "b": 2})
    Image.fromarray(np.full((4, 5), 40000, np.uint16)).save(root / "b" / "deep.png")
    with pytest.raises(UserDataError, match="deep.png.*16-bit.*8 bits per channel"):
        load_image_folder(root)


@pytest.mark.parametrize("val_fraction", [0.0, 1.0, -0.1, 1.5])
def test_val_fraction_outside_zero_one_is_an_error(tmp_path, val_fraction):
    root = tmp_path / "set"
    make_class_folder(root, {"a": 2, "b": 2})
    with pytest.raises(UserDataError, match="val_fraction"):
        load_image_folder(root, val_fraction=val_fraction)


def test_val_fraction_that_holds_out_nothing_is_an_error(tmp_path):
    root = tmp_path / "set"
    make_class_folder(root, {"a": 2, "b": 2})
    with pytest.raises(UserDataError, match="holds out no image"):
        load_image_folder(root, val_fraction=0.1)


# ---------------------------------------------------------------------------------------------
# CSV tables


def write_csv(path, text: str):
    path.write_text(text.lstrip("\n"))
    return path


def numeric_table(tmp_path, rows=40):
    generator = np.random.default_rng(0)
    lines = ["size,rooms,price"]
    for _ in range(rows):
        size, rooms = generator.normal(100, 30), generator.integers(1, 6)
        lines.append(f"{size:.3f},{rooms},{3 * size + 10 * rooms:.3f}")
    return write_csv(tmp_path / "houses.csv", "\n".join(lines) + "\n")


def test_numeric_columns_are_standardised_with_train_statistics(tmp_path):
    data = load_csv_table(numeric_table(tmp_path), "price", kind="regression")
    assert data.name == "houses.csv"
    assert data.feature_names == ("size", "rooms")
    assert data.train.X.dtype == torch.float32 and data.input_shape == (2,)
    torch.testing.assert_close(data.train.X.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(data.train.X.std(0), torch.ones(2), atol=1e-5, rtol=0)
    # val rows use the train statistics, so their own mean and std are not exactly 0 and 1
    assert data.eval.X.mean(0).abs().max() > 1e-4


def test_standardisation_matches_a_hand_computation(tmp_path):
    # y repeats x, so each row's raw x can be read back from its target
    path = write_csv(tmp_path / "t.csv", "x,y\n1,1\n2,2\n3,3\n4,4\n10,10\n6,6\n")
    data = load_csv_table(path, "y", kind="regression", val_fraction=0.34, seed=0)
    raw_train, raw_val = data.train.y[:, 0].double(), data.eval.y[:, 0].double()
    mean, std = raw_train.mean(), raw_train.std()  # unbiased std, as pandas' in D2L
    torch.testing.assert_close(data.train.X[:, 0], ((raw_train - mean) / std).float())
    torch.testing.assert_close(data.eval.X[:, 0], ((raw_val - mean) / std).float())


def test_targets_for_regression_are_float_n_by_1(tmp_path):
    data = load_csv_table(numeric_table(tmp_path, rows=10), "price", kind="regression", val_fraction=0.3)
    assert data.classes is None
    assert data.train.y.shape == (7, 1) and data.eval.y.shape == (3, 1)
    assert data.train.y.dtype == torch.float32


def test_regression_target_keeps_its_values(tmp_path):
    path = write_csv(tmp_path / "t.csv", "x,y\n1,0.5\n2,1.5\n3,2.5\n4,3.5\n")
    data = load_csv_table(path, "y", kind="regression", val_fraction=0.25)
    everything = torch.cat([data.train.y, data.eval.y]).flatten().sort().values
    assert everything.tolist() == [0.5, 1.5, 2.5, 3.5]


def test_classification_labels_are_sorted_distinct_values(tmp_path):
    # code is 0 for bird, 1 for cat, 2 for dog: the label index must follow it row by row
    path = write_csv(tmp_path / "t.csv", "code,label\n2,dog\n1,cat\n2,dog\n0,bird\n1,cat\n")
    data = load_csv_table(path, "label", kind="classification", val_fraction=0.4)
    assert data.classes == ("bird", "cat", "dog")
    assert data.train.y.dtype == torch.int64 and data.train.y.ndim == 1
    X = torch.cat([data.train.X[:, 0], data.eval.X[:, 0]])
    y = torch.cat([data.train.y, data.eval.y])
    assert torch.equal(y[X.argsort()], torch.tensor([0, 1, 1, 2, 2]))


def test_a_classification_target_of_many_numbers_is_refused_as_a_regression_target(tmp_path):
    path = numeric_table(tmp_path)
    with pytest.raises(UserDataError, match=r"'price' of .* holds 40 different numbers in 40 rows, and a classifier "
                                            r"would make each number a class of its own: predict the number with "
                                            r"`divekit run linear-regression --data .* --target price`"):
        load_csv_table(path, "price", kind="classification")
    data = load_csv_table(path, "rooms", kind="classification")  # five numbered classes: fine
    assert data.classes == ("1", "2", "3", "4", "5")


def test_one_hot_encoding_with_missing_and_unseen_categories(tmp_path):
    path = write_csv(
        tmp_path / "t.csv",
        "zone,price\nRL,1\nRM,2\n,3\nRL,4\nNA,5\nFV,6\n",
    )
    # find a seed whose val rows include the only "FV" row, so FV is unseen in train
    for seed in range(50):
        data = load_csv_table(path, "price", kind="regression", val_fraction=0.2, seed=seed)
        if 6.0 in data.eval.y.flatten().tolist():
            break
    assert data.feature_names == ("zone=RL", "zone=RM", "zone=<missing>")
    rows = {float(y): x.tolist() for split in (data.train, data.eval) for x, y in zip(split.X, split.y)}
    assert rows[1.0] == [1, 0, 0]
    assert rows[2.0] == [0, 1, 0]
    assert rows[3.0] == [0, 0, 1]  # empty cell
    assert rows[5.0] == [0, 0, 1]  # "NA", as pandas reads it
    assert rows[6.0] == [0, 0, 0]  # a category train never saw


def test_missing_numbers_become_zero_after_standardising(tmp_path):
    path = write_csv(tmp_path / "t.csv", "x,y\n1,1\n,2\n3,3\nNA,4\n5,5\n7,6\n")
    data = load_csv_table(path, "y", kind="regression", val_fraction=0.2)
    rows = {float(y): float(x) for split in (data.train, data.eval) for x, y in zip(split.X, split.y)}
    assert rows[2.0] == 0.0 and rows[4.0] == 0.0
    assert data.train.X.isfinite().all() and data.eval.X.isfinite().all()


def test_constant_column_is_centred_not_divided_by_zero(tmp_path):
    path = write_csv(tmp_path / "t.csv", "c,y\n4,1\n4,2\n4,3\n4,4\n")
    data = load_csv_table(path, "y", kind="regression")
    assert torch.cat([data.train.X, data.eval.X]).eq(0).all()
    # constant in the fitted rows, other values elsewhere: still 0, not those values in raw units
    encoding = fit_column("price", ["250000", "250000", "300000"], torch.tensor([0, 1]))
    assert encoding["std"] == 0 and apply_column(encoding, ["250000", "300000", "NA"]).eq(0).all()


def test_numbers_are_read_as_pandas_reads_them_and_blank_lines_skipped(tmp_path):
    path = write_csv(tmp_path / "t.csv", "code,x,y\n1_000,1,1\n \n2_000,2,2\n\u0661\u0662,3,3\n3_000,4,4\n")
    data = load_csv_table(path, "y", kind="regression", val_fraction=0.25)  # the line of spaces: no row
    assert len(data.train.X) + len(data.eval.X) == 4
    assert data.feature_names[0].startswith("code=") and "x" in data.feature_names  # "1_000": text, as pandas


def test_mixed_numeric_and_text_columns(tmp_path):
    path = write_csv(tmp_path / "t.csv", "Id,area,kind,y\n1,10,a,0\n2,20,b,1\n3,30,a,0\n4,40,b,1\n5,50,a,1\n")
    data = load_csv_table(path, "y", kind="classification")
    assert data.feature_names[:2] == ("Id", "area")  # an Id column is kept: the user decides
    assert set(data.feature_names[2:]) <= {"kind=a", "kind=b", "kind=<missing>"}
    assert data.input_shape == (len(data.feature_names),)


def test_quoted_fields_with_commas_and_a_bom(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes('\ufeffname,y\n"Smith, J",1\n"Doe, A",2\n"Smith, J",3\n'.encode("utf-8"))
    data = load_csv_table(path, "y", kind="regression", val_fraction=0.34)
    assert set(data.feature_names) <= {"name=Smith, J", "name=Doe, A", "name=<missing>"}


def test_csv_split_is_deterministic_per_seed(tmp_path):
    path = numeric_table(tmp_path)
    first = load_csv_table(path, "price", kind="regression", seed=5)
    again = load_csv_table(path, "price", kind="regression", seed=5)
    other = load_csv_table(path, "price", kind="regression", seed=6)
    assert torch.equal(first.eval.y, again.eval.y)
    assert not torch.equal(first.eval.y, other.eval.y)
    assert len(first.train) == 32 and len(first.eval) == 8


# ---------------------------------------------------------------------------------------------
# CSV errors


def test_missing_csv_file_is_an_error(tmp_path):
    with pytest.raises(UserDataError, match="does not exist"):
        load_csv_table(tmp_path / "none.csv", "y", kind="regression")


def test_empty_csv_is_an_error(tmp_path):
    with pytest.raises(UserDataError, match="empty"):
        load_csv_table(write_csv(tmp_path / "t.csv", ""), "y", kind="regression")


def test_header_only_csv_is_an_error(tmp_path):
    with pytest.raises(UserDataError, match="no data rows"):
        load_csv_table(write_csv(tmp_path / "t.csv", "x,y\n"), "y", kind="regression")


@pytest.mark.parametrize("separator, name", [(";", "semicolons"), ("\t", "tabs")])
def test_a_table_separated_otherwise_than_by_commas_says_so(separator, name, tmp_path):
    text = "".join(separator.join(row) + "\n" for row in (("a", "b", "y"), ("1", "2", "3"), ("4", "5", "6")))
    with pytest.raises(UserDataError, match=f"seems separated by {name} .*save it as CSV with commas"):
        load_csv_table(write_csv(tmp_path / "t.csv", text), "y", kind="regression")


def test_single_row_csv_is_an_error(tmp_path):
    with pytest.raises(UserDataError, match="at least 2"):
        load_csv_table(write_csv(tmp_path / "t.csv", "x,y\n1,2\n"), "y", kind="regression")


def test_missing_target_column_lists_the_columns(tmp_path):
    path = write_csv(tmp_path / "t.csv", "area,rooms,price\n1,2,3\n4,5,6\n")
    with pytest.raises(UserDataError, match="no column 'Price'") as error:
        load_csv_table(path, "Price", kind="regression")
    assert "area, rooms, price" in str(error.value)


def test_ragged_row_names_its_line(tmp_path):
    path = write_csv(tmp_path / "t.csv", "x,y\n1,2\n3,4\n5,6,7\n8,9\n")
    with pytest.raises(UserDataError, match="line 4 .*3 fields .*header has 2"):
        load_csv_table(path, "y", kind="regression")


def test_duplicate_column_names_are_an_error(tmp_path):
    path = write_csv(tmp_path / "t.csv", "x,x,y\n1,2,3\n4,5,6\n")
    with pytest.raises(UserDataError, match="several columns named 'x'"):
        load_csv_table(path, "y", kind="regression")


def test_non_utf8_csv_is_an_error(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("name,y\nM\u00fcller,1\nB,2\n".encode("latin-1"))
    with pytest.raises(UserDataError, match="not UTF-8"):
        load_csv_table(path, "y", kind="regression")


def test_non_numeric_regression_target_names_the_row(tmp_path):
    path = write_csv(tmp_path / "t.csv", "x,y\n1,2\n3,lots\n5,6\n")
    with pytest.raises(UserDataError, match="line 3 .*'lots'.*not a number"):
        load_csv_table(path, "y", kind="regression")


def test_missing_classification_target_names_the_row(tmp_path):
    path = write_csv(tmp_path / "t.csv", "x,y\n1,a\n3,\n5,b\n")
    with pytest.raises(UserDataError, match="line 3 .*no value"):
        load_csv_table(path, "y", kind="classification")


def test_single_class_target_is_an_error(tmp_path):
    path = write_csv(tmp_path / "t.csv", "x,y\n1,a\n2,a\n3,a\n")
    with pytest.raises(UserDataError, match="single value 'a'.*at least 2 classes"):
        load_csv_table(path, "y", kind="classification")


def test_target_as_the_only_column_is_an_error(tmp_path):
    path = write_csv(tmp_path / "t.csv", "y\n1\n2\n3\n")
    with pytest.raises(UserDataError, match="only the target column"):
        load_csv_table(path, "y", kind="regression")


def test_csv_val_fraction_is_checked(tmp_path):
    with pytest.raises(UserDataError, match="val_fraction"):
        load_csv_table(numeric_table(tmp_path), "price", kind="regression", val_fraction=1.0)


def test_unknown_kind_is_an_error(tmp_path):
    with pytest.raises(UserDataError, match="kind must be one of"):
        load_csv_table(numeric_table(tmp_path), "price", kind="clustering")


# ---------------------------------------------------------------------------------------------
# load_user_data: the --data PATH dispatch


def test_dispatch_to_image_folder(tmp_path):
    root = tmp_path / "pets"
    make_class_folder(root, {"cat": 3, "dog": 3})
    data = load_user_data(root, kind="classification", val_fraction=0.34, seed=1)
    assert data.name == "pets" and data.classes == ("cat", "dog")
    assert torch.equal(data.eval.X, load_image_folder(root, val_fraction=0.34, seed=1).eval.X)


def test_dispatch_to_csv_table(tmp_path):
    path = numeric_table(tmp_path)
    data = load_user_data(str(path), kind="regression", target="price")
    assert data.name == "houses.csv" and data.train.y.shape[1] == 1


def test_image_folder_for_regression_is_an_error(tmp_path):
    root = tmp_path / "pets"
    make_class_folder(root, {"cat": 2, "dog": 2})
    with pytest.raises(UserDataError, match="image folders are for classification experiments"):
        load_user_data(root, kind="regression")


def test_target_with_an_image_folder_is_an_error(tmp_path):
    root = tmp_path / "pets"
    make_class_folder(root, {"cat": 2, "dog": 2})
    with pytest.raises(UserDataError, match="leave --target out"):
        load_user_data(root, kind="classification", target="label")


def test_csv_without_target_asks_for_one_and_lists_columns(tmp_path):
    path = numeric_table(tmp_path)
    with pytest.raises(UserDataError, match="--target COLUMN") as error:
        load_user_data(path, kind="regression")
    assert "size, rooms, price" in str(error.value)


def test_other_files_and_missing_paths_list_the_supported_forms(tmp_path):
    other = tmp_path / "data.json"
    other.write_text("{}")
    with pytest.raises(UserDataError, match="neither a folder nor a .csv file.*--target COLUMN"):
        load_user_data(other, kind="classification")
    with pytest.raises(UserDataError, match="does not exist.*sub-folder of images per class"):
        load_user_data(tmp_path / "missing", kind="classification")


def test_user_data_errors_are_value_errors():
    assert issubclass(UserDataError, ValueError)


def test_options_that_shape_the_books_data_are_refused_with_your_data(tmp_path):
    from divekit.experiments.registry import get_experiment

    table = tmp_path / "houses.csv"
    table.write_text("area,price\n1,2\n2,4\n3,6\n4,8\n")
    recipe = get_experiment("linear-regression")
    assert recipe.make_options(data=str(table), target="price").data == str(table)
    with pytest.raises(ValueError, match="--noise chooses or shapes the recipe's own data set; with --data your data"):
        recipe.make_options(data=str(table), target="price", noise=0.5)
    assert recipe.make_options(noise=0.5).noise == 0.5  # the book's data: as it says
