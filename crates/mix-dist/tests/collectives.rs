//! c10d through mix-dist with real processes on 127.0.0.1: all-reduce, broadcast and barrier with 2 and
//! 3 ranks; a rank that never joins and a rank killed mid-job end the others within the timeout, with a
//! message naming that rank.
//!
//! This test has its own `main` (harness = false): run plainly, it is the parent and starts itself again
//! once per rank with `MIX_DIST_TEST_ROLE` and torchrun's variables set; each child runs one role.

mod common;

use mix_dist::{Backend, JoinOptions, ProcessGroup};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

fn main() {
    if let Ok(role) = std::env::var("MIX_DIST_TEST_ROLE") {
        std::process::exit(child(&role));
    }
    let cuda = tch::Cuda::is_available();
    common::run(&[
        common::Case {
            name: "collectives_with_2_ranks",
            body: || collectives(2),
            ignored: None,
        },
        common::Case {
            name: "collectives_with_3_ranks",
            body: || collectives(3),
            ignored: None,
        },
        common::Case {
            name: "a_rank_that_never_joins_is_named",
            body: never_joins,
            ignored: None,
        },
        common::Case {
            name: "a_killed_rank_is_named_and_ends_the_job",
            body: killed_rank,
            ignored: None,
        },
        common::Case {
            name: "a_rank_started_twice_is_refused",
            body: rank_twice,
            ignored: None,
        },
        common::Case {
            name: "nccl_collectives_on_cuda",
            body: nccl,
            ignored: (!cuda)
                .then_some("needs a CUDA device (run by gpu-pack's run.sh on the GPU machine)"),
        },
    ]);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn spawn(role: &str, rank: usize, world: usize, port: u16, timeout_s: u64) -> Child {
    Command::new(std::env::current_exe().expect("the test binary"))
        .env("MIX_DIST_TEST_ROLE", role)
        .env(
            "MIX_DIST_TEST_BACKEND",
            if role == "nccl" { "nccl" } else { "gloo" },
        )
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("MIX_DIST_TIMEOUT", timeout_s.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a rank")
}

/// Waits for `child` up to `limit`, killing it past that; its exit code and its stderr.
fn finish(child: Child, limit: Duration) -> (Option<i32>, String) {
    let started = Instant::now();
    let mut child = child;
    loop {
        if child.try_wait().expect("poll a rank").is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect a rank's output");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), text)
}

fn collectives(world: usize) {
    let port = free_port();
    let children: Vec<Child> = (0..world)
        .map(|r| spawn("collectives", r, world, port, 30))
        .collect();
    for (rank, child) in children.into_iter().enumerate() {
        let (code, text) = finish(child, Duration::from_secs(60));
        assert_eq!(code, Some(0), "rank {rank} of {world} failed:\n{text}");
        assert!(text.contains("collectives ok"), "rank {rank}:\n{text}");
    }
}

/// NCCL with one rank on GPU 0 (the GPU machine has one GPU): the backend builds, and all-reduce,
/// broadcast and barrier run on CUDA tensors.
fn nccl() {
    let port = free_port();
    let (code, text) = finish(spawn("nccl", 0, 1, port, 60), Duration::from_secs(120));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("nccl ok"), "{text}");
}

fn never_joins() {
    let port = free_port();
    // Three ranks expected, two started: both must give up after the 2 s timeout, naming rank 2.
    let started = Instant::now();
    let children: Vec<Child> = (0..2).map(|r| spawn("join", r, 3, port, 2)).collect();
    for (rank, child) in children.into_iter().enumerate() {
        let (code, text) = finish(child, Duration::from_secs(30));
        assert_eq!(code, Some(3), "rank {rank}:\n{text}");
        assert!(
            text.contains("rank 2 never joined the rendezvous"),
            "rank {rank}:\n{text}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(20));
}

fn rank_twice() {
    let port = free_port();
    // Ranks 0, 1 and 1 again of 3: the later rank 1 is refused at once; the others then wait for the
    // missing rank 2 until the 3 s timeout.
    let children: Vec<Child> = [0, 1, 1]
        .iter()
        .map(|&r| spawn("join", r, 3, port, 3))
        .collect();
    let texts: Vec<String> = children
        .into_iter()
        .map(|c| finish(c, Duration::from_secs(30)).1)
        .collect();
    let twice = texts
        .iter()
        .filter(|t| t.contains("rank 1 joined twice"))
        .count();
    assert_eq!(twice, 1, "{texts:#?}");
    assert!(
        texts.iter().any(|t| t.contains("rank 2 never joined")),
        "{texts:#?}"
    );
}

fn killed_rank() {
    let port = free_port();
    let started = Instant::now();
    let children: Vec<Child> = (0..3).map(|r| spawn("killed", r, 3, port, 60)).collect();
    let mut texts = Vec::new();
    for (rank, child) in children.into_iter().enumerate() {
        let (code, text) = finish(child, Duration::from_secs(40));
        texts.push((rank, code, text));
    }
    // Well within the 60 s collective timeout: the dead peer's closed connections end the others at once.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    for (rank, code, text) in texts {
        if rank == 1 {
            assert_ne!(code, Some(0), "rank 1 should have been killed");
            continue;
        }
        assert_eq!(code, Some(4), "rank {rank}:\n{text}");
        assert!(
            text.contains("rank 1 stopped: no heartbeat"),
            "rank {rank}:\n{text}"
        );
        if std::env::var_os("MIX_DIST_TEST_SHOW").is_some() {
            println!("rank {rank} said:\n{text}");
        }
    }
}

fn join_from_env() -> Result<ProcessGroup, mix_dist::Error> {
    let var = |k: &str| std::env::var(k).expect(k);
    ProcessGroup::join(&JoinOptions {
        rank: var("RANK").parse().expect("RANK"),
        world: var("WORLD_SIZE").parse().expect("WORLD_SIZE"),
        master_addr: var("MASTER_ADDR"),
        master_port: var("MASTER_PORT").parse().expect("MASTER_PORT"),
        timeout: Duration::from_secs(var("MIX_DIST_TIMEOUT").parse().expect("timeout")),
        backend: match std::env::var("MIX_DIST_TEST_BACKEND").as_deref() {
            Ok("nccl") => Backend::Nccl,
            _ => Backend::Gloo,
        },
        generation: 0,
    })
}

fn child(role: &str) -> i32 {
    let group = match join_from_env() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            return 3;
        }
    };
    let (rank, world) = (group.rank(), group.world());
    match role {
        "collectives" => {
            // Sums of two tensors of different shapes in one call, in float and in double.
            let a = Tensor::from_slice(&[rank as f32 + 1.0, 10.0 * (rank as f32 + 1.0)]);
            let b = Tensor::ones([2, 3], (Kind::Float, tch::Device::Cpu)) * rank as f64;
            group.all_reduce_sum(&[&a, &b]).expect("all-reduce");
            let n = world as f64;
            let tri = n * (n + 1.0) / 2.0;
            assert_eq!(
                Vec::<f32>::try_from(&a).unwrap(),
                vec![tri as f32, 10.0 * tri as f32]
            );
            let want_b = (n - 1.0) * n / 2.0;
            assert!(Vec::<f32>::try_from(b.view([-1]))
                .unwrap()
                .iter()
                .all(|&v| v == want_b as f32));
            let c = Tensor::from_slice(&[rank as f64 * 0.5]);
            group.all_reduce_sum(&[&c]).expect("all-reduce of doubles");
            assert_eq!(c.double_value(&[0]), 0.5 * (n - 1.0) * n / 2.0);
            // Broadcast from the last rank, into a non-contiguous view too.
            let root = world - 1;
            let d = Tensor::from_slice(&[rank as i64; 4]);
            let e =
                Tensor::full([3, 2], rank as f64, (Kind::Double, tch::Device::Cpu)).transpose(0, 1);
            group.broadcast(&[&d, &e], root).expect("broadcast");
            assert_eq!(Vec::<i64>::try_from(&d).unwrap(), vec![root as i64; 4]);
            assert!(Vec::<f64>::try_from(e.contiguous().view([-1]))
                .unwrap()
                .iter()
                .all(|&v| v == root as f64));
            group.barrier().expect("barrier");
            group.finish().expect("finish");
            println!("rank {rank}: collectives ok");
            0
        }
        "killed" => {
            group.barrier().expect("barrier");
            if rank == 1 {
                // Dies the hard way, mid-job: no error report, no goodbye (SIGABRT).
                std::thread::sleep(Duration::from_millis(300));
                std::process::abort();
            }
            let t = Tensor::from_slice(&[1.0f32]);
            for _ in 0..10_000 {
                if let Err(e) = group.all_reduce_sum(&[&t]) {
                    eprintln!("{e}");
                    return 4;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            0
        }
        "nccl" => {
            let cuda = tch::Device::Cuda(0);
            let a = Tensor::from_slice(&[1.5f32, 2.5]).to_device(cuda);
            group.all_reduce_sum(&[&a]).expect("all-reduce on CUDA");
            assert_eq!(
                Vec::<f32>::try_from(a.to_device(tch::Device::Cpu)).unwrap(),
                vec![1.5, 2.5]
            );
            let b = Tensor::from_slice(&[7i64, 8]).to_device(cuda);
            group.broadcast(&[&b], 0).expect("broadcast on CUDA");
            group.barrier().expect("barrier");
            group.finish().expect("finish");
            println!("rank {rank}: nccl ok");
            0
        }
        _ => 2,
    }
}
