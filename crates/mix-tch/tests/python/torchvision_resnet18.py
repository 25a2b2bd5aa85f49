"""Oracle for mix-tch's ResNet18 body: torchvision's resnet18 (random init, fixed seed) and its outputs.

Usage: python torchvision_resnet18.py OUT_DIR SEED

Writes OUT_DIR/weights.safetensors (the full state_dict, fc and num_batches_tracked included, as a
torchvision checkpoint has them) and OUT_DIR/io.safetensors with
  x            input (2, 3, 64, 64), float32
  eval         body output in eval mode, float32
  eval64       body output in eval mode with the model and input in float64
  train        body output in train mode (batch statistics), float32
  bn1.running_mean / bn1.running_var / layer4.1.bn2.running_var   buffers after that train forward
The body is fastai's create_body cut: every child of the model but avgpool and fc.
"""
import sys

import torch
import torchvision
from safetensors.torch import save_file

out_dir, seed = sys.argv[1], int(sys.argv[2])
torch.manual_seed(seed)
model = torchvision.models.resnet18(weights=None)
# Random init leaves BatchNorm at weight 1, bias 0 and running stats 0/1; perturb them so the test sees
# whether every buffer and parameter lands in the right place.
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
state = {k: v.contiguous() for k, v in model.state_dict().items()}
save_file(state, f"{out_dir}/weights.safetensors")

body = torch.nn.Sequential(*list(model.children())[:-2])
x = torch.randn(2, 3, 64, 64)
body.eval()
with torch.no_grad():
    y_eval = body(x)
    body64 = torch.nn.Sequential(*list(torchvision.models.resnet18(weights=None).children())[:-2]).double()
    body64.load_state_dict({k: v for k, v in body.state_dict().items()})
    body64.eval()
    y_eval64 = body64(x.double())
body.train()
with torch.no_grad():
    y_train = body(x)
io = {
    "x": x,
    "eval": y_eval,
    "eval64": y_eval64,
    "train": y_train,
    "bn1.running_mean": model.bn1.running_mean.clone(),
    "bn1.running_var": model.bn1.running_var.clone(),
    "layer4.1.bn2.running_var": model.layer4[1].bn2.running_var.clone(),
}
save_file({k: v.contiguous() for k, v in io.items()}, f"{out_dir}/io.safetensors")
