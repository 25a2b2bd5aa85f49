//! Replies for the network fault tests: hand-written responses whose headers may lie, trickles,
//! files that carry validators (`ETag`, `Last-Modified`) and change between requests, redirects.

use std::time::Duration;

use crate::common::{Reply, Request};

/// The offset of `Range: bytes=N-`, when the request has one.
pub fn range_start(req: &Request) -> Option<usize> {
    req.header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
}

/// A response written by hand: the status line, `Content-Length: declared` (which may lie about
/// `body`), `Connection: close` and `headers`, then `body` in pieces of `chunk` bytes with `pause`
/// after each; the connection is closed after the last piece.
pub fn raw(
    status: u16,
    headers: &[(&str, String)],
    declared: usize,
    body: &[u8],
    chunk: usize,
    pause: Duration,
) -> Reply {
    let mut head =
        format!("HTTP/1.1 {status} X\r\nContent-Length: {declared}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut pieces = vec![(head.into_bytes(), Duration::ZERO)];
    pieces.extend(body.chunks(chunk.max(1)).map(|c| (c.to_vec(), pause)));
    Reply::Raw(pieces)
}

/// `body` from the requested offset (206) or whole (200), honestly declared, written in pieces of
/// `chunk` bytes with `pause` after each.
pub fn paced(req: &Request, body: &[u8], chunk: usize, pause: Duration) -> Reply {
    match range_start(req) {
        Some(s) if s < body.len() => raw(
            206,
            &[(
                "Content-Range",
                format!("bytes {s}-{}/{}", body.len() - 1, body.len()),
            )],
            body.len() - s,
            &body[s..],
            chunk,
            pause,
        ),
        _ => raw(200, &[], body.len(), body, chunk, pause),
    }
}

/// One version of a file on the server, with the validators it is served with.
pub struct Version<'a> {
    pub body: &'a [u8],
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
}

/// `version` served with its validators. A `Range: bytes=N-` is honoured (206); with `if_range`,
/// only when the request's `If-Range` (if any) names this version, as RFC 9110 asks, otherwise
/// `If-Range` is ignored, as by a server that honours `Range` blindly.
pub fn versioned(req: &Request, version: &Version<'_>, if_range: bool) -> Reply {
    let body = version.body;
    let same = |v: &str| Some(v) == version.etag || Some(v) == version.last_modified;
    let start = range_start(req).filter(|_| !if_range || req.header("if-range").map_or(true, same));
    let mut headers = vec![];
    if let Some(etag) = version.etag {
        headers.push(("ETag".to_string(), etag.to_string()));
    }
    if let Some(date) = version.last_modified {
        headers.push(("Last-Modified".to_string(), date.to_string()));
    }
    let (status, from) = match start {
        Some(s) if s < body.len() => {
            headers.push((
                "Content-Range".to_string(),
                format!("bytes {s}-{}/{}", body.len() - 1, body.len()),
            ));
            (206, s)
        }
        Some(_) => return not_satisfiable(body.len()),
        None => (200, 0),
    };
    Reply::Send {
        status,
        headers,
        body: body[from..].to_vec(),
        cut_after: None,
        stall_after_cut: false,
        pause: Duration::ZERO,
    }
}

/// 416 with `Content-Range: bytes */len`.
pub fn not_satisfiable(len: usize) -> Reply {
    Reply::Send {
        status: 416,
        headers: vec![("Content-Range".into(), format!("bytes */{len}"))],
        body: vec![],
        cut_after: None,
        stall_after_cut: false,
        pause: Duration::ZERO,
    }
}

/// 302 to `location`.
pub fn redirect_to(location: &str) -> Reply {
    Reply::Send {
        status: 302,
        headers: vec![("Location".into(), location.to_string())],
        body: vec![],
        cut_after: None,
        stall_after_cut: false,
        pause: Duration::ZERO,
    }
}
