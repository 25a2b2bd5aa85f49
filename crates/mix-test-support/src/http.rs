//! A loopback HTTP/1.1 server: each request answered by a handler (which may cut, stall, trickle or lie),
//! and a one-file server on top of it.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    /// The request target, e.g. `/file.tgz`.
    pub path: String,
    /// The headers in the order they came, names as sent.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header `name`, compared without regard to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server does with a request.
pub enum Reply {
    /// Answer with `status`, `Content-Length: body.len()` and the body; with `cut_after`, send only
    /// that many body bytes and close (a dropped connection); `pause` is slept between 8 KiB
    /// chunks.
    Send {
        /// The status code.
        status: u16,
        /// Headers after `Content-Length` and `Connection: close`.
        headers: Vec<(String, String)>,
        /// The body.
        body: Vec<u8>,
        /// Send only this many body bytes.
        cut_after: Option<usize>,
        /// After sending `cut_after` bytes, hold the connection open without sending (a stalled
        /// server) instead of closing it.
        stall_after_cut: bool,
        /// The sleep after each 8 KiB chunk.
        pause: Duration,
    },
    /// Read the request and never answer, holding the connection until the server stops.
    Stall,
    /// Write each piece exactly as given (status line, headers and body are the caller's, so the
    /// headers may lie), sleeping its pause after it, then close; the writing stops when the
    /// client goes away or the server stops.
    Raw(Vec<(Vec<u8>, Duration)>),
}

impl Reply {
    /// `status` with a short body.
    pub fn status(status: u16) -> Reply {
        Reply::Send {
            status,
            headers: vec![],
            body: b"nothing here".to_vec(),
            cut_after: None,
            stall_after_cut: false,
            pause: Duration::ZERO,
        }
    }

    /// The whole file (200), or from the requested offset (206) when `honor_range` and the request
    /// has `Range: bytes=N-`.
    pub fn file(req: &Request, body: &[u8], honor_range: bool) -> Reply {
        let start = req
            .header("range")
            .filter(|_| honor_range)
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok());
        match start {
            Some(s) if s < body.len() => Reply::Send {
                status: 206,
                headers: vec![(
                    "Content-Range".into(),
                    format!("bytes {s}-{}/{}", body.len() - 1, body.len()),
                )],
                body: body[s..].to_vec(),
                cut_after: None,
                stall_after_cut: false,
                pause: Duration::ZERO,
            },
            _ => Reply::Send {
                status: 200,
                headers: vec![],
                body: body.to_vec(),
                cut_after: None,
                stall_after_cut: false,
                pause: Duration::ZERO,
            },
        }
    }

    /// The same reply, closed after `after` body bytes.
    pub fn cut(mut self, after: usize) -> Reply {
        if let Reply::Send { cut_after, .. } = &mut self {
            *cut_after = Some(after);
        }
        self
    }

    /// The same reply, silent but open after `after` body bytes until the server stops.
    pub fn stall_at(mut self, after: usize) -> Reply {
        if let Reply::Send {
            cut_after,
            stall_after_cut,
            ..
        } = &mut self
        {
            *cut_after = Some(after);
            *stall_after_cut = true;
        }
        self
    }

    /// The same reply, sleeping `per_chunk` after each 8 KiB chunk.
    pub fn slow(mut self, per_chunk: Duration) -> Reply {
        if let Reply::Send { pause, .. } = &mut self {
            *pause = per_chunk;
        }
        self
    }
}

type Handler = dyn Fn(usize, &Request) -> Reply + Send + Sync;

/// An HTTP/1.1 server on 127.0.0.1 that answers each request with `handler(index, request)` and
/// records the requests. It stops (and ends every connection) when dropped.
pub struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Server {
    /// Listens on a free loopback port and answers request number `index` (from 0) with
    /// `handler(index, request)`, each connection on its own thread.
    pub fn start(handler: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept = {
            let (requests, stop, workers) = (requests.clone(), stop.clone(), workers.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (requests, stop, handler) =
                        (requests.clone(), stop.clone(), handler.clone());
                    let worker = thread::spawn(move || serve(stream, &requests, &stop, &*handler));
                    workers.lock().unwrap().push(worker);
                }
            })
        };
        Server {
            addr,
            requests,
            stop,
            accept: Some(accept),
            workers,
        }
    }

    /// `http://127.0.0.1:PORT` followed by `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// How many requests were received so far.
    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        for w in self.workers.lock().unwrap().drain(..) {
            let _ = w.join();
        }
    }
}

fn serve(stream: TcpStream, requests: &Mutex<Vec<Request>>, stop: &AtomicBool, handler: &Handler) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return; // the wake-up connection, or a client that went away
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let req = Request { path, headers };
    let index = {
        let mut r = requests.lock().unwrap();
        r.push(req.clone());
        r.len() - 1
    };
    let hold = || {
        while !stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(20));
        }
    };
    let mut out = stream;
    match handler(index, &req) {
        Reply::Stall => hold(),
        Reply::Raw(pieces) => {
            for (bytes, pause) in pieces {
                if stop.load(Ordering::SeqCst) || out.write_all(&bytes).is_err() {
                    return;
                }
                let _ = out.flush();
                thread::sleep(pause);
            }
            let _ = out.shutdown(std::net::Shutdown::Both);
        }
        Reply::Send {
            status,
            headers,
            body,
            cut_after,
            stall_after_cut,
            pause,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            if out.write_all(head.as_bytes()).is_err() {
                return;
            }
            let end = cut_after.unwrap_or(body.len()).min(body.len());
            for chunk in body[..end].chunks(8192) {
                if stop.load(Ordering::SeqCst) || out.write_all(chunk).is_err() {
                    return;
                }
                let _ = out.flush();
                thread::sleep(pause);
            }
            if cut_after.is_some() && stall_after_cut {
                hold();
            }
            let _ = out.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, noted, freed): connecting is refused.
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A URL on a loopback port where nothing listens (connection refused).
pub fn closed_port_url(path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", closed_port())
}

/// Serves one file to every GET (200, or 206 from the offset of a `Range: bytes=N-`) and counts the
/// requests; it stops when dropped.
pub struct FileServer {
    server: Server,
    /// The requests answered so far.
    pub requests: Arc<AtomicUsize>,
}

impl FileServer {
    /// Serves `body` on 127.0.0.1.
    pub fn start(body: Vec<u8>) -> FileServer {
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        let server = Server::start(move |_, req| {
            count.fetch_add(1, Ordering::SeqCst);
            Reply::file(req, &body, true)
        });
        FileServer { server, requests }
    }

    /// The URL of `path` (any path serves the file) on this server.
    pub fn url(&self, path: &str) -> String {
        self.server
            .url(&format!("/{}", path.trim_start_matches('/')))
    }

    /// The requests answered so far.
    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}
