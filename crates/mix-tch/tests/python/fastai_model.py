"""Oracle for mix-tch's ResNet18 learner: fastai's own `create_vision_model(resnet18, n, pretrained=False)`
(fastai/vision/learner.py; `create_cnn_model` is its deprecated alias) with OUR weights copied in, and
fastai's `create_head` + `apply_init(head, nn.init.kaiming_normal_)` on its own.

Usage: python fastai_model.py IN OUT
IN (safetensors): every variable of a mix-tch VisionModel (torchvision names for the body, `head.<i>.*`
for index i of fastai's head Sequential), plus `input.x` (N, 3, H, W) float32 and `input.n` (1,) int64.
OUT (safetensors):
  logits               fastai's model in eval mode on input.x
  init.<i>.weight      fastai's head after create_head(512, n) + apply_init (torch seed 0), for
  init.<i>.bias        every parameter of the head (BatchNorm weight and bias, Linear weight)
  layers               (9,) int64 code of each head layer's class: 0 AdaptiveConcatPool2d, 1 Flatten,
                       2 BatchNorm1d, 3 Dropout, 4 Linear, 5 ReLU, -1 other
  dropout              (2,) float64 the two Dropout probabilities
"""
import sys

import torch
from fastai.layers import AdaptiveConcatPool2d, Flatten
from fastai.torch_core import apply_init
from fastai.vision.learner import create_head, create_vision_model
from safetensors.torch import load_file, save_file
from torchvision.models import resnet18

inp, out = sys.argv[1], sys.argv[2]
t = load_file(inp)
x, n = t.pop("input.x"), int(t.pop("input.n")[0])

model = create_vision_model(resnet18, n, pretrained=False)
# Our names -> fastai's state dict: the body is `create_body`'s Sequential of torchvision's children
# (conv1, bn1, relu, maxpool, layer1..layer4 at indices 0..7), the head `1.<i>.*`.
CHILD = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}


def fastai_name(k):
    if k.startswith("head."):
        return "1." + k[len("head."):]
    first, rest = k.split(".", 1)
    return f"0.{CHILD[first]}.{rest}"


state = {fastai_name(k): v for k, v in t.items()}
missing, unexpected = model.load_state_dict(state, strict=False)
assert not unexpected, f"names fastai's model does not have: {unexpected}"
assert all(k.endswith("num_batches_tracked") for k in missing), f"not set: {missing}"
model.eval()
with torch.no_grad():
    logits = model(x)

torch.manual_seed(0)
# create_vision_model passes the body's 512 features; create_head doubles them for the concat pool
# (older fastai passed `nf * 2`, hence the `create_head(1024, n)` of some docs).
head = create_head(512, n)
apply_init(head, torch.nn.init.kaiming_normal_)
kinds = {AdaptiveConcatPool2d: 0, Flatten: 1, torch.nn.BatchNorm1d: 2, torch.nn.Dropout: 3,
         torch.nn.Linear: 4, torch.nn.ReLU: 5}
layers = [kinds.get(type(m), -1) for m in head]
res = {"logits": logits, "layers": torch.tensor(layers, dtype=torch.int64),
       "dropout": torch.tensor([m.p for m in head if isinstance(m, torch.nn.Dropout)], dtype=torch.float64)}
for k, v in head.state_dict().items():
    if not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
        res["init." + k] = v
save_file({k: v.contiguous() for k, v in res.items()}, out)
