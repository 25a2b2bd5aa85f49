//! Where torchvision's ImageNet ResNet18 weights come from in `.safetensors` form.
//!
//! timm publishes torchvision's original `resnet18` ImageNet weights (`IMAGENET1K_V1`) as
//! `timm/resnet18.tv_in1k`, with torchvision's parameter names. Downloading is mix-fetch's job; this module
//! only names the file and its checksum, and [`crate::VisionModel::load_pretrained`] checks every name and
//! shape when loading.

/// Download URL, pinned to the Hugging Face commit that added the file.
pub const RESNET18_TV_IN1K_URL: &str =
    "https://huggingface.co/timm/resnet18.tv_in1k/resolve/a987fd6b60f845221bfff84b6f0191273ba56ead/model.safetensors";

/// SHA-256 of that file, as the Hugging Face page lists it (Git LFS details).
pub const RESNET18_TV_IN1K_SHA256: &str =
    "694f673df6520a3158624e8a89af086f59923ee4cd7436fe5bc3bc71d295ad81";

/// The file name to cache it under.
pub const RESNET18_TV_IN1K_FILE: &str = "resnet18.tv_in1k.safetensors";
