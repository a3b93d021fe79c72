"""Writes tests/data/d2l_bert_tiny.pt: a tiny BERTModel of the d2l package (0.17.6, D2L §14.8), its state
dict, inputs and outputs in eval mode, for tests/test_bert.py's check of ``from_d2l_state_dict``.

Run with the Python of a virtual environment holding d2l 0.17.6 (the one benchmarks/ uses), from the
repository root, beside ../shared/bench/tv_shim.py (a stand-in for torchvision): ``.d2l-venv/bin/python tests/data/make_d2l_bert_tiny.py tests/data/d2l_bert_tiny.pt``.
"""
import sys, torch
sys.path.insert(0, "../shared/bench")
import tv_shim; tv_shim.install()
from d2l import torch as d2l
torch.manual_seed(0)
net = d2l.BERTModel(20, num_hiddens=8, norm_shape=[8], ffn_num_input=8, ffn_num_hiddens=16, num_heads=2,
                    num_layers=2, dropout=0.2, max_len=16, key_size=8, query_size=8, value_size=8,
                    hid_in_features=8, mlm_in_features=8, nsp_in_features=8)
net.eval()
tokens = torch.randint(0, 20, (3, 7))
segments = torch.tensor([[0, 0, 0, 1, 1, 1, 1]] * 3)
valid_lens = torch.tensor([7.0, 4.0, 5.0])
pred_positions = torch.tensor([[1, 2], [1, 3], [2, 4]])
with torch.no_grad():
    encoded, mlm, nsp = net(tokens, segments, valid_lens, pred_positions)
torch.save({"state_dict": net.state_dict(), "tokens": tokens, "segments": segments, "valid_lens": valid_lens,
            "pred_positions": pred_positions, "encoded": encoded, "mlm": mlm, "nsp": nsp,
            "d2l": "0.17.6", "torch": str(torch.__version__)}, sys.argv[1])
print(list(net.state_dict()))
