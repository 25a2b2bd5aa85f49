//! One ResNet18 training step on the CPU (fastai head, fastai's Adam), plain and with MixUp or CutMix on
//! the device, in images per second. The peer doing the same step in PyTorch eager on the same libtorch is
//! benches/peers/torch_train_step.py; run both with the same BATCH, SIZE and thread count:
//!
//! ```text
//! cargo bench -p mix-benches --features tch --bench train_step -- --quick
//! ~/.cache/mix/libtorch-2.11.0/bin/python benches/peers/torch_train_step.py
//! ```
//!
//! `MIX_BENCH_DEVICE=cuda`, `MIX_BENCH_BATCH` and `MIX_BENCH_SIZE` change the device (each step then ends
//! with a CUDA synchronize), the batch and the image side; the peer takes `--device`, `--batch`, `--size`.

// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mix_core::{BatchShape, CutMix, ImageSize, Mix, MixUp};
use mix_tch::loss::{CrossEntropyFlat, LossFunc};
use mix_tch::tch::{Device, Kind, Tensor};
use mix_tch::{mix, Adam, AdamConfig, VisionModel};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// Classes of the head (Oxford-IIIT Pet has 37).
const CLASSES: i64 = 37;

fn env_or(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Device, images per step and image side: CPU, 32, 64 ("small images": a CPU step at 224 takes seconds).
fn setup() -> (Device, i64, i64) {
    let device = match std::env::var("MIX_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        _ => Device::Cpu,
    };
    (
        device,
        env_or("MIX_BENCH_BATCH", 32),
        env_or("MIX_BENCH_SIZE", 64),
    )
}

struct Step {
    device: Device,
    batch: i64,
    size: i64,
    model: VisionModel,
    opt: Adam,
    x: Tensor,
    y: Tensor,
    rng: ChaCha8Rng,
}

impl Step {
    fn new(device: Device, batch: i64, size: i64) -> Self {
        if device.is_cuda() {
            mix_tch::tch::Cuda::cudnn_set_benchmark(true);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let model = VisionModel::new(CLASSES as usize, device, &mut rng).expect("model");
        let mut opt = Adam::new(&model, AdamConfig::default());
        opt.set_lr(1e-3);
        opt.mom = 0.9;
        mix_tch::tch::manual_seed(0);
        let x = Tensor::randn([batch, 3, size, size], (Kind::Float, device));
        let y = Tensor::randint(CLASSES, [batch], (Kind::Int64, device));
        Step {
            device,
            batch,
            size,
            model,
            opt,
            x,
            y,
            rng,
        }
    }

    /// Forward in training mode, loss, backward, Adam step, zero_grad; mixing first when given.
    fn run(&mut self, mixer: Option<&dyn Mix>) {
        let loss = match mixer {
            None => {
                let pred = self
                    .model
                    .forward(&self.x, Some(&mut self.rng))
                    .expect("forward");
                CrossEntropyFlat.loss(&pred, &self.y).expect("loss")
            }
            Some(m) => {
                let side = self.size as usize;
                let shape = BatchShape::new(self.batch as usize, 3, ImageSize::new(side, side));
                let params = m.sample(shape, &mut self.rng).expect("sample");
                // What MixCallback does: one copy of the params to the device, then apply and mixed loss.
                let on_device = mix::DeviceParams::new(&params, self.device).expect("params");
                let xb = on_device.apply(&params, &self.x).expect("apply");
                let pred = self
                    .model
                    .forward(&xb, Some(&mut self.rng))
                    .expect("forward");
                on_device
                    .mixed_loss(&CrossEntropyFlat, &pred, &self.y)
                    .expect("mixed loss")
            }
        };
        loss.backward();
        self.opt.step().expect("step");
        self.opt.zero_grad();
        if let Device::Cuda(i) = self.device {
            mix_tch::tch::Cuda::synchronize(i as i64);
        }
    }
}

fn train_step(c: &mut Criterion) {
    let (device, batch, size) = setup();
    let name = if device.is_cuda() { "cuda" } else { "cpu" };
    let mut group = c.benchmark_group(format!("train_step_{name}_resnet18_bs{batch}_{size}px"));
    group.throughput(Throughput::Elements(batch as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(3));
    group.measurement_time(Duration::from_secs(20));
    let mut step = Step::new(device, batch, size);
    group.bench_function("plain", |b| b.iter(|| step.run(None)));
    let mixup = MixUp::new(0.4).expect("alpha");
    group.bench_function("mixup", |b| b.iter(|| step.run(Some(&mixup))));
    let cutmix = CutMix::new(1.0).expect("alpha");
    group.bench_function("cutmix", |b| b.iter(|| step.run(Some(&cutmix))));
    group.finish();
    println!(
        "{name}: batch {batch}, {size}x{size}, libtorch threads {}; criterion's thrpt is images/s",
        mix_tch::tch::get_num_threads()
    );
}

criterion_group!(benches, train_step);
criterion_main!(benches);
