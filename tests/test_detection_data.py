"""Detection data in the book's banana format (D2L §13.6): reading it, the generated sets, loading
them into Detection batches. Every set here is tiny and drawn into the test's own cache."""

import hashlib
import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from divekit.data import detection
from divekit.data.detection import (DETECTION_SETS, generate_detection_set, load_detection, read_detection_split,
                                    write_detection_split)
from divekit.data.loader import TensorLoader

needs_photos = pytest.mark.skipif(importlib.util.find_spec("skimage") is None,
                                  reason="the generated sets paste objects on scikit-image's photographs")

# the first rows of the book's bananas_val/label.csv (the real file's header and format)
BOOK_ROWS = ("img_name,label,xmin,ymin,xmax,ymax\n0.png,0,183,63,241,112\n1.png,0,26,86,79,133\n"
             "2.png,0,139,108,178,148\n")


def write_images(folder, names, size=(256, 256), seed=0):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / "images" / name)


def test_the_books_rows_read_as_the_books_loader_reads_them(tmp_path):
    split = tmp_path / "bananas_val"
    write_images(split, ["0.png", "1.png", "2.png"])
    (split / "label.csv").write_text(BOOK_ROWS)
    data = read_detection_split(split)
    assert data.X.shape == (3, 3, 256, 256) and data.X.dtype == torch.uint8
    # d2l's read_data_bananas: torch.tensor(targets).unsqueeze(1) / 256
    book = torch.tensor([[0, 183, 63, 241, 112], [0, 26, 86, 79, 133], [0, 139, 108, 178, 148]]).unsqueeze(1) / 256
    torch.testing.assert_close(data.boxes, book[..., 1:])
    assert data.labels.tolist() == [[0], [0], [0]]
    with Image.open(split / "images" / "1.png") as image:
        assert torch.equal(data.X[1], torch.from_numpy(np.array(image)).permute(2, 0, 1))


def test_several_objects_per_image_are_padded_with_label_minus_one(tmp_path):
    split = tmp_path / "shapes_val"
    images = [Image.new("RGB", (200, 100), (i, i, i)) for i in range(3)]
    write_detection_split(split, images, [[(2, 0, 0, 100, 50)], [(0, 10, 20, 30, 40), (3, 50, 0, 200, 100)],
                                          [(1, 0, 0, 2, 2)]])
    assert (split / "label.csv").read_text().splitlines()[:3] == ["img_name,label,xmin,ymin,xmax,ymax",
                                                                   "0.png,2,0,0,100,50", "1.png,0,10,20,30,40"]
    data = read_detection_split(split)
    assert data.labels.tolist() == [[2, -1], [0, 3], [1, -1]]
    # x by the width (200), y by the height (100)
    torch.testing.assert_close(data.boxes[1], torch.tensor([[0.05, 0.2, 0.15, 0.4], [0.25, 0.0, 1.0, 1.0]]))
    assert data.boxes[0, 1].tolist() == [0, 0, 0, 0] and data.X[2, 0, 0, 0] == 2


def test_bad_label_files_are_one_line_errors(tmp_path):
    split = tmp_path / "split"
    write_images(split, ["0.png", "1.png"])
    (split / "label.csv").write_text("name,label,x1,y1,x2,y2\n")
    with pytest.raises(ValueError, match="must start with the header img_name,label,xmin,ymin,xmax,ymax"):
        read_detection_split(split)
    (split / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n0.png,0,1,2,3\n")
    with pytest.raises(ValueError, match="line 2: expected 6 fields"):
        read_detection_split(split)
    (split / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n")
    with pytest.raises(ValueError, match="lists no images"):
        read_detection_split(split)
    write_images(split, ["1.png"], size=(64, 32))
    (split / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n0.png,0,1,2,3,4\n1.png,0,1,2,3,4\n")
    with pytest.raises(ValueError, match="differ in size"):
        read_detection_split(split)
    header = "img_name,label,xmin,ymin,xmax,ymax\n"
    for row, message in (("0.png,1.5,1,2,3,4", r"line 2: expected a class index and four pixel coordinates, "
                                               r"got \['1.5', '1', '2', '3', '4'\]"),
                         ("0.png,0,1,2,x,4", "line 2: expected a class index and four pixel coordinates"),
                         ("0.png,-1,1,2,3,4", "line 2: expected a class index >= 0 and a finite box with xmin < xmax"),
                         ("0.png,0,30,40,10,20", "line 2: expected a class index >= 0 and a finite box with xmin < xmax"),
                         ("0.png,0,1,2,1,4", "line 2: expected a class index >= 0 and a finite box with xmin < xmax"),
                         ("0.png,0,1,2,inf,4", "line 2: expected a class index >= 0 and a finite box"),
                         (",0,1,2,3,4", "line 2: no image name"),
                         ("9.png,0,1,2,3,4", "line 2: image 9.png is not in"),
                         ("0.png,0,1,2,300,4", r"line 2: the box \(1, 2, 300, 4\) reaches outside 0.png, which is "
                                               r"256x256 pixels; boxes are in each image's own pixels"),
                         ("0.png,0,-1,2,3,4", "line 2: the box .* reaches outside 0.png")):
        (split / "label.csv").write_text(header + row + "\n")
        with pytest.raises(ValueError, match=message):
            read_detection_split(split)
    (split / "label.csv").write_text("")
    with pytest.raises(ValueError, match="label.csv is empty; it needs the header"):
        read_detection_split(split)


def test_blank_lines_are_skipped_and_unlisted_images_named(tmp_path, caplog):
    split = tmp_path / "split"
    write_images(split, ["0.png", "1.png", "2.png"])
    (split / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n0.png,0,1,2,3,4\n\n1.png,0,1,2,3,4\n\n")
    with caplog.at_level("WARNING", logger="divekit"):
        assert len(read_detection_split(split).X) == 2
    assert "1 image(s) in" in caplog.text and "have no row in" in caplog.text and "2.png" in caplog.text


def test_a_label_file_without_commas_names_its_separator(tmp_path):
    write_images(tmp_path, ["0.png"], size=(8, 8))
    header = "img_name,label,xmin,ymin,xmax,ymax"
    for mark, name in (("\t", "tabs"), (";", "semicolons"), (" ", "spaces")):       # a spreadsheet's other exports
        (tmp_path / "label.csv").write_text(f"{header.replace(',', mark)}\n{mark.join('0.png 0 1 1 4 4'.split())}\n")
        with pytest.raises(ValueError, match=rf"label.csv, line 1: no commas \(its fields are separated by {name}\); "
                                             rf"label.csv must be comma-separated \({header}\)"):
            read_detection_split(tmp_path)
    (tmp_path / "label.csv").write_text(header.replace(",", "|") + "\n")
    with pytest.raises(ValueError, match="line 1: no commas; label.csv must be comma-separated"):
        read_detection_split(tmp_path)
    (tmp_path / "label.csv").write_text(f"{header}\n0.png\t0\t1\t1\t4\t4\n")  # the header right, a row with tabs
    with pytest.raises(ValueError, match=r"line 2: no commas \(its fields are separated by tabs\)"):
        read_detection_split(tmp_path)
    for name in ("0.png", "my photo.png"):  # an image's name alone, with or without spaces: not a separator
        (tmp_path / "label.csv").write_text(f"{header}\n{name}\n")
        with pytest.raises(ValueError, match=rf"line 2: expected 6 fields, got \['{name}'\]; an image without objects "
                                             rf"is its name and five empty fields \({name},,,,,\)$"):
            read_detection_split(tmp_path)


def test_a_class_name_in_the_label_column_points_to_classes_txt(tmp_path):
    write_images(tmp_path, ["0.png", "1.png"], size=(8, 8))
    (tmp_path / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n0.png,0,1,1,4,4\n1.png,banana,1,1,4,4\n")
    with pytest.raises(ValueError, match=r"label.csv, line 3: the label column holds class indices 0..K-1, got "
                                         r"'banana'; write the class's index there, and the class names in classes.txt "
                                         r"\(beside label.csv or its split folders\), one a line in index order"):
        detection.load_user_detection(tmp_path, size=8, seed=0)


def test_stray_files_in_images_are_ignored_and_a_named_file_that_is_no_image_is_refused(tmp_path, caplog):
    write_images(tmp_path, ["0.png", "1.png"], size=(8, 8))
    (tmp_path / "images" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "images" / "notes.txt").write_text("taken on Monday\n")
    (tmp_path / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n0.png,0,1,1,4,4\n1.png,0,1,1,4,4\n")
    Image.new("I;16", (8, 8)).save(tmp_path / "images" / "16-bit.png")
    with caplog.at_level("WARNING", logger="divekit"):
        assert len(read_detection_split(tmp_path)) == 2                   # only the files label.csv names are read
    assert "1 image(s) in" in caplog.text and "left out (e.g. 16-bit.png)" in caplog.text  # an image, not the others
    (tmp_path / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n0.png,0,1,1,4,4\nnotes.txt,0,1,1,4,4\n")
    with pytest.raises(ValueError, match=r"label.csv, line 3: images/notes.txt is not an image PIL can read \(cannot "
                                         r"identify image file .*\); fix or replace the file, or remove its rows$"):
        read_detection_split(tmp_path)
    (tmp_path / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n16-bit.png,0,1,1,4,4\n")
    with pytest.raises(ValueError, match="16-bit.png has 'I;16' pixels"):  # an image PIL reads: its own message
        read_detection_split(tmp_path)


def test_a_label_file_with_a_byte_order_mark_and_images_resized_on_reading(tmp_path):
    split = tmp_path / "split"
    write_images(split, ["0.png"], size=(100, 200))  # (rows, columns): 200 wide, 100 high
    (split / "label.csv").write_bytes(b"\xef\xbb\xbf" + BOOK_ROWS.splitlines()[0].encode() + b"\n0.png,0,20,10,100,50\n")
    data = read_detection_split(split, size=(64, 32))  # (width, height): a detector's input size
    assert data.X.shape == (1, 3, 32, 64)
    torch.testing.assert_close(data.boxes, torch.tensor([[[0.1, 0.1, 0.5, 0.5]]]))  # by the file's own size


@needs_photos
def test_a_pasted_object_is_exactly_inside_its_box():
    """On a flat background the changed pixels are the object: their bounding box is the written box."""
    generator = torch.Generator().manual_seed(3)
    background = torch.full((3, 128, 128), 90, dtype=torch.uint8)
    for spec in DETECTION_SETS.values():
        for _ in range(5):
            image, rows = detection._draw_image(spec, background, generator)
            assert spec.objects[0] <= len(rows) <= spec.objects[1]
            changed = (np.asarray(image).astype(int) - 90).any(axis=-1)                     # (H, W)
            for label, x1, y1, x2, y2 in rows:
                assert 0 <= label < len(spec.classes) and 0 <= x1 < x2 <= 128 and 0 <= y1 < y2 <= 128
                # tight: the object reaches all four sides of its box
                assert changed[y1, x1:x2].any() and changed[y2 - 1, x1:x2].any()
                assert changed[y1:y2, x1].any() and changed[y1:y2, x2 - 1].any()
            ys, xs = np.nonzero(changed)
            assert (xs.min(), ys.min()) == (min(r[1] for r in rows), min(r[2] for r in rows))
            assert (xs.max() + 1, ys.max() + 1) == (max(r[3] for r in rows), max(r[4] for r in rows))


@needs_photos
def test_generated_sets_are_deterministic_in_the_books_format(tmp_path):
    def digest(root):
        return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    spec = DETECTION_SETS["generated-bananas"]
    a = generate_detection_set(tmp_path / "a", spec, num_train=4, num_val=2, image_size=64, seed=1)
    b = generate_detection_set(tmp_path / "b", spec, num_train=4, num_val=2, image_size=64, seed=1)
    c = generate_detection_set(tmp_path / "c", spec, num_train=4, num_val=2, image_size=64, seed=2)
    assert digest(a) == digest(b) != digest(c)
    assert sorted(digest(a)) == ["bananas_train/images/0.png", "bananas_train/images/1.png",
                                 "bananas_train/images/2.png", "bananas_train/images/3.png", "bananas_train/label.csv",
                                 "bananas_val/images/0.png", "bananas_val/images/1.png", "bananas_val/label.csv"]
    train = read_detection_split(a / "bananas_train")
    sides = (train.boxes[..., 2:] - train.boxes[..., :2]).amax(-1)                     # the longer side, relative
    assert train.labels.tolist() == [[0]] * 4 and ((sides > 0.1) & (sides < 0.3)).all()  # the book's 32-68 of 256


@needs_photos
def test_load_detection_draws_once_into_the_cache_and_feeds_the_loader(tmp_path):
    data = load_detection("generated-shapes", num_train=6, num_val=3, image_size=64, seed=0)
    assert data.classes == ("banana", "ring", "triangle", "star") and data.input_shape == (3, 64, 64)
    assert len(data.train) == 6 and len(data.eval) == 3 and data.train.labels.shape[1] <= 4
    assert ((data.train.labels >= 0).sum(1) >= 1).all() and "not the book's photographs" in data.name
    again = load_detection("generated-shapes", num_train=6, num_val=3, image_size=64, seed=0)
    assert torch.equal(again.train.X, data.train.X) and torch.equal(again.train.boxes, data.train.boxes)
    batch = next(iter(TensorLoader(data.train, 4)))
    assert batch.X.dtype == torch.float32 and batch.X.max() <= 1
    assert batch.boxes.shape == (4, data.train.boxes.shape[1], 4)
    with pytest.raises(ValueError, match="unknown detection set 'voc'; choose bananas, generated-bananas"):
        load_detection("voc")


def test_the_books_set_is_read_from_a_verified_zip(tmp_path, monkeypatch):
    """load_detection("bananas") through the hub: the zip found in data_dir, checked, unpacked into the cache,
    its two splits read. The registry's entry with a stand-in zip's SHA-1 (the real zip is not here)."""
    import dataclasses
    import io
    import zipfile

    from divekit.data import hub

    buffer, rng = io.BytesIO(), np.random.default_rng(0)
    with zipfile.ZipFile(buffer, "w") as archive:
        for split, rows in (("bananas_train", BOOK_ROWS), ("bananas_val", BOOK_ROWS.rsplit("2.png", 1)[0])):
            archive.writestr(f"banana-detection/{split}/label.csv", rows)
            for name in ("0.png", "1.png", "2.png"):
                png = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(png, format="PNG")
                archive.writestr(f"banana-detection/{split}/images/{name}", png.getvalue())
    zipped = buffer.getvalue()
    (tmp_path / "mine" / "banana-detection").mkdir(parents=True)
    (tmp_path / "mine" / "banana-detection" / "banana-detection.zip").write_bytes(zipped)
    real = hub.REGISTRY["banana-detection"]
    spec = dataclasses.replace(real, archive=dataclasses.replace(real.archive, checksum=hashlib.sha1(zipped).hexdigest()))
    monkeypatch.setattr(detection, "fetch",
                        lambda name, data_dir=None: hub.fetch(spec, data_dir=data_dir, progress=False))
    data = load_detection("bananas", data_dir=tmp_path / "mine")
    assert data.classes == ("banana",) and len(data.train) == 3 and len(data.eval) == 2
    torch.testing.assert_close(data.train.boxes[0, 0], torch.tensor([183, 63, 241, 112]) / 256)
    assert (hub.cache_dir() / "banana-detection" / "bananas_val" / "images" / "1.png").is_file()


# -- your own data (divekit run ssd --data DIR) ----------------------------------------------------------


def test_your_split_folders_are_read_resized_with_their_class_names(tmp_path):
    from conftest import write_detection_folder

    train_rows = write_detection_folder(tmp_path / "train", count=5, size=(48, 40), seed=1)
    write_detection_folder(tmp_path / "test", count=3, size=(48, 40), seed=2)
    (tmp_path / "classes.txt").write_text("dark\n\nlight\n")                   # blank lines skipped
    data = detection.load_user_detection(tmp_path, size=32, seed=0)
    assert data.classes == ("dark", "light") and data.eval_name == "test"
    assert data.train.X.shape == (5, 3, 32, 32) and data.eval.X.shape == (3, 3, 32, 32)
    assert "5 training and 3 test images, resized to 32x32; 2 classes" in data.name
    for i, rows in enumerate(train_rows):  # boxes relative to their own image: resizing keeps them
        expected = torch.tensor([[x1 / 48, y1 / 40, x2 / 48, y2 / 40] for _, x1, y1, x2, y2 in rows])
        assert torch.allclose(data.train.boxes[i, :len(rows)], expected)
        assert data.train.labels[i, :len(rows)].tolist() == [label for label, *_ in rows]
    (tmp_path / "classes.txt").unlink()
    assert detection.load_user_detection(tmp_path, size=32, seed=0).classes == ("class 0", "class 1")


def test_one_folder_of_yours_is_split_by_the_seed_and_the_books_pair_is_found(tmp_path):
    from conftest import write_detection_folder

    write_detection_folder(tmp_path / "one", count=20, seed=3)
    first, again, other = (detection.load_user_detection(tmp_path / "one", size=32, seed=seed) for seed in (0, 0, 1))
    assert (len(first.train), len(first.eval), first.eval_name) == (18, 2, "val")  # a tenth held out
    assert torch.equal(first.eval.X, again.eval.X) and not torch.equal(first.eval.X, other.eval.X)
    everything = torch.cat((first.train.X, first.eval.X)).flatten(1)                # every image once
    whole = detection.read_detection_split(tmp_path / "one", size=(32, 32)).X.flatten(1)
    assert sorted(map(tuple, everything.tolist())) == sorted(map(tuple, whole.tolist()))
    write_detection_folder(tmp_path / "book" / "bananas_train", count=4, seed=4)  # the book's archive, unpacked
    write_detection_folder(tmp_path / "book" / "bananas_val", count=2, seed=5)
    book = detection.load_user_detection(tmp_path / "book", size=32, seed=0)
    assert (len(book.train), len(book.eval)) == (4, 2)


def test_your_data_in_a_wrong_shape_is_a_one_line_error(tmp_path):
    from conftest import write_detection_folder

    with pytest.raises(ValueError, match="no such folder; detection data is a folder with label.csv and images/"):
        detection.load_user_detection(tmp_path / "absent", size=32, seed=0)
    write_detection_folder(tmp_path / "file", count=3)
    assert len(detection.load_user_detection(tmp_path / "file" / "label.csv", size=32, seed=0).train) == 2  # its folder
    write_images(tmp_path / "bare", ["0.png", "1.png"], size=(32, 32))
    (tmp_path / "bare" / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n0.png,,,,,\n1.png,,,,,\n")
    with pytest.raises(ValueError, match="its label.csv lists no objects .* give each object a row"):
        detection.load_user_detection(tmp_path / "bare", size=32, seed=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"expected label.csv and images/ there .* or train/ with val/valid/test"):
        detection.load_user_detection(tmp_path / "empty", size=32, seed=0)
    write_detection_folder(tmp_path / "single", count=1)
    with pytest.raises(ValueError, match="lists one image; a run needs two or more"):
        detection.load_user_detection(tmp_path / "single", size=32, seed=0)
    for name in ("a_train", "a_val", "b_train", "b_val"):
        write_detection_folder(tmp_path / "pairs" / name, count=2)
    with pytest.raises(ValueError, match="it has 2 pairs of \\*_train and \\*_val folders: give one of them"):
        detection.load_user_detection(tmp_path / "pairs", size=32, seed=0)
    write_detection_folder(tmp_path / "named" / "train", count=4, classes=2, seed=7)
    write_detection_folder(tmp_path / "named" / "val", count=2, classes=2, seed=8)
    (tmp_path / "named" / "classes.txt").write_text("only\n")
    with pytest.raises(ValueError, match="names 1 classes, but label.csv uses class index 1; give one name a line"):
        detection.load_user_detection(tmp_path / "named", size=32, seed=0)


def test_an_image_without_objects_is_its_name_and_empty_fields(tmp_path):
    write_images(tmp_path, ["0.png", "1.png", "2.png"], size=(64, 64))
    (tmp_path / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n0.png,0,8,8,32,32\n1.png,,,,,\n"
                                        "0.png,1,16,16,48,40\n2.png, , , , , \n")
    split = read_detection_split(tmp_path)
    assert split.labels.tolist() == [[0, 1], [-1, -1], [-1, -1]]               # 1.png and 2.png: all padding
    assert torch.equal(split.boxes[0, 1], torch.tensor([0.25, 0.25, 0.75, 0.625]))
    (tmp_path / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n1.png,,,,,\n1.png,0,8,8,99,32\n")
    with pytest.raises(ValueError, match="line 3: the box \\(8, 8, 99, 32\\) reaches outside 1.png"):
        read_detection_split(tmp_path)                                            # the object's own line
    (tmp_path / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n9.png,,,,,\n")
    with pytest.raises(ValueError, match="line 2: image 9.png is not in"):
        read_detection_split(tmp_path)
    (tmp_path / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n0.png,,,,,\n")
    assert read_detection_split(tmp_path).labels.tolist() == [[-1]]             # no image has objects: M = 1
