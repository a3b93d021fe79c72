"""d2l's own BERT pretraining (D2L 0.17.x, §14.9-14.10), timed: ``d2l.load_data_wiki(512, 64)`` and the
book's ``train_bert`` loop for 50 steps on ``d2l.BERTModel`` with the book's sizes.

Run by ``bench_bert.py`` with the Python of a virtual environment that has d2l installed (this file
does not import divekit). It prints one JSON object on stdout.

``train_bert`` is the notebook's code (d2l-ai/d2l-zh@e6b18cc,
chapter_natural-language-processing-pretraining/bert-pretraining.md, PyTorch tab; not in the d2l
package), copied below without its ``Animator`` (notebook plotting). ``devices`` is ``[--device]``
(``cpu`` by default): the book's ``d2l.try_all_gpus()`` returns ``[]`` on a CPU-only machine and
``devices[0]`` would fail; on a GPU, ``--device cuda`` is the book's one-GPU run.
``d2l.download_extract`` is pointed at the local WikiText-2 copy (no network here). The data loader
keeps the book's ``d2l.get_dataloader_workers()`` = 4 worker processes.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from _d2l_softmax import load_shim


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--tv-shim", default="../shared/bench/tv_shim.py")
    args = p.parse_args()

    import random

    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    load_shim(args.tv_shim)  # d2l imports torchvision, which has no CPU build here
    from d2l import torch as d2l

    d2l.download_extract = lambda name, folder=None: os.path.join(args.data, "wikitext-2")

    t0 = time.perf_counter()
    batch_size, max_len = 512, 64
    train_iter, vocab = d2l.load_data_wiki(batch_size, max_len)
    data_seconds = time.perf_counter() - t0

    net = d2l.BERTModel(len(vocab), num_hiddens=128, norm_shape=[128],
                        ffn_num_input=128, ffn_num_hiddens=256, num_heads=2,
                        num_layers=2, dropout=0.2, key_size=128, query_size=128,
                        value_size=128, hid_in_features=128, mlm_in_features=128,
                        nsp_in_features=128)
    devices = [torch.device(args.device)]
    loss = nn.CrossEntropyLoss()

    # the book's train_bert (D2L §14.10.1), verbatim but for the Animator and the returned numbers
    def train_bert(train_iter, net, loss, vocab_size, devices, num_steps):
        net = nn.DataParallel(net, device_ids=devices).to(devices[0])
        trainer = torch.optim.Adam(net.parameters(), lr=0.01)
        step, timer = 0, d2l.Timer()
        # 遮蔽语言模型损失的和，下一句预测任务损失的和，句子对的数量，计数
        metric = d2l.Accumulator(4)
        num_steps_reached = False
        while step < num_steps and not num_steps_reached:
            for tokens_X, segments_X, valid_lens_x, pred_positions_X,\
                mlm_weights_X, mlm_Y, nsp_y in train_iter:
                tokens_X = tokens_X.to(devices[0])
                segments_X = segments_X.to(devices[0])
                valid_lens_x = valid_lens_x.to(devices[0])
                pred_positions_X = pred_positions_X.to(devices[0])
                mlm_weights_X = mlm_weights_X.to(devices[0])
                mlm_Y, nsp_y = mlm_Y.to(devices[0]), nsp_y.to(devices[0])
                trainer.zero_grad()
                timer.start()
                mlm_l, nsp_l, l = d2l._get_batch_loss_bert(
                    net, loss, vocab_size, tokens_X, segments_X, valid_lens_x,
                    pred_positions_X, mlm_weights_X, mlm_Y, nsp_y)
                l.backward()
                trainer.step()
                metric.add(mlm_l, nsp_l, tokens_X.shape[0], 1)
                timer.stop()
                step += 1
                if step == num_steps:
                    num_steps_reached = True
                    break

        print(f'MLM loss {metric[0] / metric[3]:.3f}, '
              f'NSP loss {metric[1] / metric[3]:.3f}', flush=True)
        print(f'{metric[2] / timer.sum():.1f} sentence pairs/sec on '
              f'{str(devices)}', flush=True)
        return metric[0] / metric[3], metric[1] / metric[3], metric[2], timer.sum()

    t1 = time.perf_counter()
    mlm, nsp, pairs, timed = train_bert(train_iter, net, loss, len(vocab), devices, args.steps)
    wall = time.perf_counter() - t1
    print(json.dumps({"data_seconds": data_seconds, "train_seconds": timed, "train_wall_seconds": wall,
                      "pairs": pairs, "mlm_loss_d2l": mlm, "nsp_loss": nsp, "vocab": len(vocab),
                      "examples": len(train_iter.dataset)}))


if __name__ == "__main__":
    main()
