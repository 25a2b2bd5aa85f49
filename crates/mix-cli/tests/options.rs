//! The train, lr-find and predict options: defaults, refusals naming the option, --config files.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;
use mix_cli::train::{parse_lr, TrainCli, MAX_NPROC};
use mix_cli::weights::PretrainedArg;
use mix_cli::{
    BestMetric, FineTuneArgs, LrFindOpts, LrSlice, MixChoice, PredictOpts, SpeedArgs, TrainArgs,
    TrainCommand, TrainOpts,
};

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn parse(args: &[&str]) -> mix_cli::Result<TrainCommand> {
    TrainOpts::parse_args(&os(args))
}

fn new_run(args: &[&str]) -> TrainArgs {
    match parse(args).unwrap() {
        TrainCommand::New(a) => *a,
        other => panic!("expected a new run, got {other:?}"),
    }
}

/// The message a refusal prints, whichever layer (clap or our checks) refused.
fn refusal(args: &[&str]) -> String {
    match parse(args) {
        Ok(cmd) => panic!("{args:?} was accepted: {cmd:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_are_the_seeds_and_the_sample_gets_smaller_ones() {
    let a = new_run(&[]);
    assert_eq!(
        (a.mix, a.alpha, a.epochs, a.bs, a.lr, a.dataset.as_str()),
        (MixChoice::MixUp, 1.0, 1, 64, 1e-3, "pets")
    );
    assert_eq!(
        (a.pretrained, a.lr_slice, a.fine_tune),
        (PretrainedArg::ImageNet, LrSlice::Same, None)
    );
    assert_eq!((a.resize, a.size, a.device.as_str()), (256, 224, "auto"));
    assert_eq!(
        (a.save_best, a.mixup_off_epoch, a.timm),
        (Some(BestMetric::ValidLoss), None, None)
    );
    let s = new_run(&["--dataset", "sample", "--mix", "cutmix"]);
    assert_eq!((s.bs, s.resize, s.size, s.alpha), (16, 128, 112, 1.0));
    assert_eq!(s.pretrained, PretrainedArg::None);
    let s = new_run(&[
        "--dataset",
        "sample",
        "--bs",
        "4",
        "--size",
        "32",
        "--resize",
        "40",
    ]);
    assert_eq!((s.bs, s.resize, s.size), (4, 40, 32));
}

#[test]
fn bad_values_are_refused_with_the_option_named() {
    for (args, want) in [
        (&["--mix", "mixop"][..], "'--mix <MIX>'"),
        (
            &["--alpha", "0"][..],
            "--alpha 0: expected a finite number > 0",
        ),
        (&["--mix", "none", "--alpha", "1"][..], "--alpha goes with"),
        (&["--epochs", "0"][..], "--epochs 0: expected at least 1"),
        (
            &["--device", "gpu"][..],
            "expected auto, cpu, cuda or cuda:N",
        ),
        (
            &["--size", "300"][..],
            "--size 300 is larger than --resize 256",
        ),
        (
            &["--pretrained", "/no/such.safetensors"][..],
            "no such file",
        ),
        (&["--pretrained", "imagenett"][..], "no such file"),
        (
            &["--resume", "r", "--lr", "1"][..],
            "--lr cannot be combined with --resume",
        ),
        (&["--bogus", "1"][..], "unexpected argument '--bogus'"),
        (
            &["--fine-tune", "2", "--epochs", "3"][..],
            "--epochs cannot be combined with --fine-tune",
        ),
        (
            &["--freeze-epochs", "2"][..],
            "--freeze-epochs goes with --fine-tune",
        ),
        (
            &["--fine-tune", "1", "--lr", "1e-5..1e-3"][..],
            "base_lr, one number",
        ),
        (&["--lr", "1e-3..1e-5"][..], "LO < HI"),
        (&["--lr", "..0"][..], "finite and > 0"),
        (&["--resize", "100000"][..], "at most 4096"),
        (
            &["--pretrained-sha256", "ab"][..],
            "--pretrained-sha256 goes with --pretrained URL",
        ),
        (
            &[
                "--pretrained",
                "http://h/w.safetensors",
                "--pretrained-sha256",
                "xyz",
            ][..],
            "64 hexadecimal",
        ),
        (
            &["--mixup-prob", "0.5"][..],
            "--mixup-prob goes with --mix timm",
        ),
        (
            &["--mix", "timm", "--mixup-prob", "1.5"][..],
            "--mixup-prob 1.5: expected a probability",
        ),
        (
            &["--mix", "timm", "--cutmix-minmax", "0.8,0.2"][..],
            "--cutmix-minmax 0.8,0.2: expected LO,HI",
        ),
        (
            &["--mix", "timm", "--smoothing", "1"][..],
            "--smoothing 1: expected a number in [0, 1)",
        ),
        (
            &["--mix", "timm", "--mixup", "0"][..],
            "expected at least one of them on",
        ),
        (
            &["--mix", "timm", "--alpha", "1"][..],
            "--alpha goes with --mix mixup or cutmix",
        ),
        (
            &["--mix", "none", "--mixup-off-epoch", "1"][..],
            "--mixup-off-epoch goes with a mix",
        ),
        (&["--save-best", "loss"][..], "'--save-best <METRIC>'"),
    ] {
        let err = refusal(args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn typos_get_suggestions() {
    let err = refusal(&["--epoch", "2"]);
    assert!(err.contains("--epochs"), "{err}");
    let err = refusal(&["--mix", "mixpu"]);
    assert!(err.contains("mixup"), "{err}");
}

#[test]
fn learning_rates_read_like_fastai_floats_and_slices() {
    assert_eq!(parse_lr("3e-3").unwrap(), (3e-3, LrSlice::Same));
    assert_eq!(parse_lr("..1e-3").unwrap(), (1e-3, LrSlice::Tenth));
    assert_eq!(parse_lr("1e-5..1e-3").unwrap(), (1e-3, LrSlice::From(1e-5)));
    let a = new_run(&["--lr", "1e-6..1e-4"]);
    assert_eq!((a.lr, a.lr_slice), (1e-4, LrSlice::From(1e-6)));
}

#[test]
fn fine_tune_takes_fastais_defaults() {
    let a = new_run(&["--fine-tune", "3"]);
    assert_eq!(
        a.fine_tune,
        Some(FineTuneArgs {
            epochs: 3,
            freeze_epochs: 1
        })
    );
    assert_eq!((a.lr, a.epochs), (2e-3, 3));
    let a = new_run(&["--fine-tune", "2", "--freeze-epochs", "0", "--lr", "1e-3"]);
    assert_eq!(
        (a.lr, a.epochs, a.fine_tune.unwrap().freeze_epochs),
        (1e-3, 2, 0)
    );
}

#[test]
fn timm_knobs_make_mix_cores_mixer_config() {
    let a = new_run(&[
        "--mix",
        "timm",
        "--mixup",
        "0.8",
        "--cutmix",
        "1.0",
        "--mixup-prob",
        "0.5",
        "--mixup-switch-prob",
        "0.25",
        "--mixup-mode",
        "pair",
        "--smoothing",
        "0.05",
        "--no-correct-lam",
        "--mixup-off-epoch",
        "3",
    ]);
    let t = a.timm.expect("a timm mixer");
    assert_eq!((t.mixup_alpha, t.cutmix_alpha), (Some(0.8), Some(1.0)));
    assert_eq!(
        (t.prob, t.switch_prob, t.label_smoothing, t.correct_lam),
        (0.5, 0.25, 0.05, false)
    );
    assert_eq!(t.mode, mix_core::MixMode::Pair);
    assert_eq!((a.alpha, a.mixup_off_epoch), (0.0, Some(3)));
    let a = new_run(&["--mix", "timm", "--cutmix-minmax", "0.2,0.8"]);
    assert_eq!(a.timm.unwrap().cutmix_minmax, Some((0.2, 0.8)));
    let defaults = new_run(&["--mix", "timm"]).timm.unwrap();
    assert_eq!(defaults, mix_core::MixConfig::default());
}

#[test]
fn pretrained_values_are_read_in_order() {
    let a = new_run(&["--pretrained", "none"]);
    assert_eq!(a.pretrained, PretrainedArg::None);
    let a = new_run(&["--dataset", "sample", "--pretrained", "imagenet"]);
    assert_eq!(a.pretrained, PretrainedArg::ImageNet);
    let sha = "ab".repeat(32);
    let a = new_run(&[
        "--pretrained",
        "http://127.0.0.1:1/w.safetensors",
        "--pretrained-sha256",
        &sha,
    ]);
    assert_eq!(
        a.pretrained,
        PretrainedArg::Url("http://127.0.0.1:1/w.safetensors".into())
    );
    assert_eq!(a.pretrained_sha256.as_deref(), Some(sha.as_str()));
}

#[derive(Parser)]
struct LrFindCli {
    #[command(flatten)]
    opts: LrFindOpts,
}

#[derive(Parser)]
struct PredictCli {
    #[command(flatten)]
    opts: PredictOpts,
}

#[test]
fn lr_find_and_predict_options() {
    let lr = |args: &[&str]| {
        LrFindCli::try_parse_from(std::iter::once("lr-find").chain(args.iter().copied()))
            .map_err(mix_cli::Error::from)
            .and_then(|c| c.opts.resolve())
    };
    let a = lr(&["--dataset", "sample", "--num-it", "20"]).unwrap();
    assert_eq!(
        (a.start_lr, a.end_lr, a.num_it, a.stop_div),
        (1e-7, 10.0, 20, true)
    );
    assert_eq!(
        (a.data.bs, a.data.pretrained.clone()),
        (16, PretrainedArg::None)
    );
    let err = lr(&["--start-lr", "1", "--end-lr", "0.1"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected the start below the end"), "{err}");
    let predict = |args: &[&str]| {
        PredictCli::try_parse_from(std::iter::once("predict").chain(args.iter().copied()))
            .map_err(mix_cli::Error::from)
            .and_then(|c| c.opts.resolve())
    };
    let p = predict(&["--run", "r", "a.jpg", "dir", "--top", "2"]).unwrap();
    assert_eq!(p.images, vec![PathBuf::from("a.jpg"), PathBuf::from("dir")]);
    assert_eq!((p.top, p.run), (2, PathBuf::from("r")));
    for (args, want) in [
        (&["a.jpg"][..], "--run RUN is required"),
        (&["--run", "r"][..], "no images given"),
    ] {
        let err = predict(args).unwrap_err().to_string();
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn every_numeric_option_refuses_zero_negative_nan_inf_huge_and_empty_naming_itself() {
    // Values each option accepts among the hostile ones: a seed of 0 and no frozen epochs.
    let accepted = [
        ("seed", "0"),
        ("freeze-epochs", "0"),
        ("mixup-off-epoch", "0"),
    ];
    for name in [
        "alpha",
        "epochs",
        "fine-tune",
        "freeze-epochs",
        "bs",
        "lr",
        "seed",
        "resize",
        "size",
        "stop-after",
        "mixup-off-epoch",
        "nproc",
    ] {
        for value in [
            "0",
            "-1",
            "-0.5",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "1e400",
            "18446744073709551616",
            "340282366920938463463374607431768211456",
            "",
            " ",
        ] {
            let mut args = vec![format!("--{name}"), value.to_string()];
            if name == "freeze-epochs" {
                args.extend(["--fine-tune".to_string(), "1".to_string()]);
            }
            if name == "size" {
                args.extend(["--resize".to_string(), "4096".to_string()]);
            }
            let args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
            let got = TrainOpts::parse_args(&args);
            if accepted.contains(&(name, value)) {
                assert!(got.is_ok(), "{args:?}: {got:?}");
                continue;
            }
            let err = match got {
                Ok(cmd) => panic!("{args:?} was accepted: {cmd:?}"),
                Err(e) => e.to_string(),
            };
            // Our checks start with the option; clap's say `for '--name <VALUE>'`.
            let named =
                err.starts_with(&format!("--{name}")) || err.contains(&format!("'--{name} <"));
            assert!(named, "{args:?}: {err}");
        }
    }
    for (args, want) in [
        (
            &["--epochs", "18446744073709551615"][..],
            "--epochs 18446744073709551615: expected at most 100000 epochs",
        ),
        (
            &[
                "--fine-tune",
                "1",
                "--freeze-epochs",
                "18446744073709551615",
            ][..],
            "--freeze-epochs 18446744073709551615: expected at most",
        ),
        (
            &["--fine-tune", "100001"][..],
            "--fine-tune 100001: expected at most",
        ),
        (&["--resize", "18446744073709551615"][..], "at most 4096"),
        (
            &["--alpha", "1e39"][..],
            "--alpha inf: expected a finite number > 0",
        ),
        (
            &["--lr", "1e400"][..],
            "--lr 1e400: expected learning rates that are finite",
        ),
    ] {
        let err = refusal(args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // A huge batch size parses; the run refuses it against the dataset's size.
    assert!(parse(&["--bs", "18446744073709551615"]).is_ok());
    let a = new_run(&["--epochs", "100000", "--seed", "18446744073709551615"]);
    assert_eq!((a.epochs, a.seed), (100_000, u64::MAX));
}

#[test]
fn empty_paths_and_names_are_refused_naming_the_option() {
    for name in [
        "dataset",
        "resume",
        "out",
        "pattern",
        "pretrained",
        "device",
        "mix",
        "config",
    ] {
        for args in [
            vec![format!("--{name}"), String::new()],
            vec![format!("--{name}=")],
        ] {
            let args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
            let err = TrainOpts::parse_args(&args).unwrap_err().to_string();
            assert!(err.contains(&format!("'--{name} <")), "{args:?}: {err}");
        }
    }
}

#[test]
fn resume_takes_only_device_stop_after_and_speed() {
    let got = parse(&["--resume", "runs/a", "--device", "cpu"]).unwrap();
    assert_eq!(
        got,
        TrainCommand::Resume {
            run: PathBuf::from("runs/a"),
            device: Some("cpu".into()),
            stop_after: None,
            speed: SpeedArgs::default(),
        }
    );
    let err = refusal(&["--resume", "runs/a", "--mix", "timm"]);
    assert!(
        err.contains("--mix cannot be combined with --resume"),
        "{err}"
    );
}

#[test]
fn the_last_value_of_a_repeated_option_wins() {
    assert_eq!(new_run(&["--epochs", "2", "--epochs", "3"]).epochs, 3);
}

#[test]
fn help_and_version_are_clap_displays_not_errors_of_ours() {
    let err = TrainCli::try_parse_from(["train", "--help"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
    let help = err.render().to_string();
    for option in [
        "--mix",
        "--cutmix-minmax",
        "--save-best",
        "--config",
        "--mixup-off-epoch",
    ] {
        assert!(help.contains(option), "{option} missing from help:\n{help}");
    }
}

#[test]
fn config_files_set_options_and_the_command_line_wins() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("run.toml");
    std::fs::write(
        &toml,
        "dataset = \"sample\"\nepochs = 3\nbs = 8\nmix = \"timm\"\ncutmix_minmax = [0.25, 0.75]\n\
         mixup-prob = 0.5\nno_correct_lam = true\nsave_best = \"error_rate\"\nlr = 0.002\n",
    )
    .unwrap();
    let config = toml.to_str().unwrap();
    let a = new_run(&["--config", config, "--bs", "4"]);
    assert_eq!(
        (a.dataset.as_str(), a.epochs, a.bs, a.lr),
        ("sample", 3, 4, 0.002)
    );
    assert_eq!(a.save_best, Some(BestMetric::ErrorRate));
    let t = a.timm.unwrap();
    assert_eq!(
        (t.cutmix_minmax, t.prob, t.correct_lam),
        (Some((0.25, 0.75)), 0.5, false)
    );
    // The same settings as JSON.
    let json = dir.path().join("run.json");
    std::fs::write(
        &json,
        r#"{"dataset": "sample", "epochs": 2, "mix": "cutmix", "alpha": 0.4}"#,
    )
    .unwrap();
    let a = new_run(&["--config", json.to_str().unwrap()]);
    assert_eq!((a.epochs, a.mix, a.alpha), (2, MixChoice::CutMix, 0.4));
}

#[test]
fn config_files_are_checked_like_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    for (text, want) in [
        (
            "epoch = 3\n",
            "unknown key `epoch` (did you mean `epochs`?)",
        ),
        ("epochs = 0\n", "--epochs 0: expected at least 1"),
        ("epochs = \"many\"\n", "'--epochs <N>'"),
        ("resume = \"runs/a\"\n", "unknown key `resume`"),
        (
            "no_correct_lam = 3\n",
            "no_correct_lam: expected true or false",
        ),
        ("epochs = [\n", "not valid TOML"),
        ("mix = \"timm\"\nalpha = 1.0\n", "--alpha goes with"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let err = refusal(&["--config", path.to_str().unwrap()]);
        assert!(err.contains(want), "{text:?}: {err}");
    }
    let err = refusal(&["--config", "/no/such/run.toml"]);
    assert!(
        err.contains("--config /no/such/run.toml: cannot read the file"),
        "{err}"
    );
    let err = refusal(&["--config", "/no/such/run.toml", "--resume", "r"]);
    assert!(
        err.contains("--config cannot be combined with --resume"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn non_utf8_paths_are_taken_as_given() {
    use std::os::unix::ffi::OsStringExt;
    let out = OsString::from_vec(b"runs-\xff".to_vec());
    let args = vec![OsString::from("--out"), out.clone()];
    match TrainOpts::parse_args(&args).unwrap() {
        TrainCommand::New(a) => assert_eq!(a.out, PathBuf::from(out)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn nproc_is_checked_and_may_change_on_resume() {
    assert_eq!(new_run(&[]).speed.nproc, 1);
    assert_eq!(new_run(&["--nproc", "4"]).speed.nproc, 4);
    assert_eq!(
        new_run(&["--nproc", &MAX_NPROC.to_string()]).speed.nproc,
        MAX_NPROC
    );
    assert!(refusal(&["--nproc", "0"]).contains("--nproc 0: expected at least 1"));
    let too_many = (MAX_NPROC + 1).to_string();
    let err = refusal(&["--nproc", &too_many]);
    assert!(
        err.contains(&format!(
            "--nproc {too_many}: expected at most {MAX_NPROC} processes"
        )),
        "{err}"
    );
    assert!(refusal(&["--nproc", "-1"]).contains("'--nproc <N>'"));
    match parse(&["--resume", "runs/a", "--nproc", "2"]).unwrap() {
        TrainCommand::Resume { speed, .. } => assert_eq!(speed.nproc, 2),
        other => panic!("expected a resume, got {other:?}"),
    }
    let err = refusal(&["--resume", "runs/a", "--nproc", "0"]);
    assert!(err.contains("--nproc 0: expected at least 1"), "{err}");
    let help = TrainCli::try_parse_from(["train", "--help"])
        .unwrap_err()
        .render()
        .to_string();
    assert!(help.contains("--nproc <N>"), "{help}");
}

#[test]
fn nproc_comes_from_config_files_too() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("run.toml");
    std::fs::write(&toml, "nproc = 2\n").unwrap();
    let config = toml.to_str().unwrap();
    assert_eq!(new_run(&["--config", config]).speed.nproc, 2);
    assert_eq!(
        new_run(&["--config", config, "--nproc", "3"]).speed.nproc,
        3
    );
    std::fs::write(&toml, "nproc = 0\n").unwrap();
    assert!(refusal(&["--config", config]).contains("--nproc 0: expected at least 1"));
}

#[test]
fn memory_format_defaults_to_auto_and_may_change_on_resume() {
    assert_eq!(new_run(&[]).speed.memory_format, "auto");
    for value in ["auto", "contiguous", "channels-last"] {
        assert_eq!(
            new_run(&["--memory-format", value]).speed.memory_format,
            value
        );
    }
    assert!(refusal(&["--memory-format", "nhwc"]).contains("'nhwc'"));
    match parse(&["--resume", "runs/a", "--memory-format", "contiguous"]).unwrap() {
        TrainCommand::Resume { speed, .. } => assert_eq!(speed.memory_format, "contiguous"),
        other => panic!("expected a resume, got {other:?}"),
    }
}
