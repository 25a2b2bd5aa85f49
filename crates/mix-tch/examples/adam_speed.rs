//! Times Adam's fused step against the per-parameter reference loop on ResNet18's parameters.
//!
//! usage: `cargo run --release -p mix-tch --example adam_speed [-- STEPS [cpu|cuda]]` (default 100 steps
//! on CUDA when libtorch sees it, else the CPU); prints the milliseconds per step of each and the largest
//! relative difference between the parameters the two leave.

use mix_tch::tch::{self, Cuda, Device, Kind, Tensor};
use mix_tch::{Adam, AdamConfig, VisionModel};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// A ResNet18 with every parameter trainable and a fixed gradient (a function of the parameter's
/// values, so both runs see the same numbers).
fn model(device: Device) -> mix_tch::Result<VisionModel> {
    let mut model = VisionModel::new(37, device, &mut ChaCha8Rng::seed_from_u64(0))?;
    model.unfreeze();
    let loss = model
        .params()
        .iter()
        .map(|p| (&p.tensor * (p.tensor.detach().sin() * 0.01 + 1e-3)).sum(Kind::Float))
        .fold(Tensor::zeros([], (Kind::Float, device)), |a, b| a + b);
    loss.backward();
    Ok(model)
}

/// Milliseconds per step over `steps` steps, after two warm-up steps.
fn time(opt: &mut Adam, steps: usize, fused: bool, device: Device) -> mix_tch::Result<f64> {
    let step = |opt: &mut Adam| {
        if fused {
            opt.step()
        } else {
            opt.step_reference()
        }
    };
    for _ in 0..2 {
        step(opt)?;
    }
    if let Device::Cuda(i) = device {
        Cuda::synchronize(i as i64);
    }
    let start = Instant::now();
    for _ in 0..steps {
        step(opt)?;
    }
    if let Device::Cuda(i) = device {
        Cuda::synchronize(i as i64);
    }
    Ok(start.elapsed().as_secs_f64() * 1e3 / steps as f64)
}

fn main() -> mix_tch::Result<()> {
    let mut args = std::env::args().skip(1);
    let steps: usize = args.next().map_or(Ok(100), |s| s.parse()).map_err(|e| {
        mix_tch::Error::Invalid(format!("STEPS: expected a whole number, found {e}"))
    })?;
    let device = match args.next().as_deref() {
        Some("cpu") => Device::Cpu,
        Some("cuda") => Device::Cuda(0),
        Some(other) => {
            return Err(mix_tch::Error::Invalid(format!(
                "device: expected cpu or cuda, found {other}"
            )))
        }
        None if Cuda::is_available() => Device::Cuda(0),
        None => Device::Cpu,
    };
    let (reference_model, fused_model) = (model(device)?, model(device)?);
    let _guard = tch::no_grad_guard();
    let n: i64 = fused_model
        .params()
        .iter()
        .map(|p| p.tensor.numel() as i64)
        .sum();
    println!(
        "ResNet18 + head: {} tensors, {n} values, {device:?}, {} threads, {steps} steps",
        fused_model.params().len(),
        tch::get_num_threads()
    );
    let mut reference = Adam::new(&reference_model, AdamConfig::default());
    let mut fused = Adam::new(&fused_model, AdamConfig::default());
    let reference_ms = time(&mut reference, steps, false, device)?;
    let fused_ms = time(&mut fused, steps, true, device)?;
    let mut worst = 0f64;
    for (a, b) in fused_model.params().iter().zip(reference_model.params()) {
        let diff = (&a.tensor - &b.tensor).abs().max().double_value(&[]);
        let scale = b.tensor.abs().max().double_value(&[]).max(1e-2);
        worst = worst.max(diff / scale);
    }
    println!("reference loop: {reference_ms:.2} ms/step");
    println!(
        "fused:          {fused_ms:.2} ms/step ({:.1}x)",
        reference_ms / fused_ms
    );
    println!(
        "largest relative difference after {} steps: {worst:.2e}",
        steps + 2
    );
    Ok(())
}
