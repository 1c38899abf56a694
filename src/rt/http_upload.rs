//! `/upload/` of an HTTP listener with the `upload` handler: the file I/O of XEP-0363 uploads around
//! the sans-IO checks of `modules::http_upload::web`.
//!
//! File I/O goes through glommio's io_uring `BufferedFile` (open, write, read, rename, unlink are
//! io_uring operations): the shard never blocks on the disk and no thread or channel is needed. A
//! PUT body is written as it arrives, gathered into [`CHUNK`]-byte writes; a GET streams the file
//! in [`CHUNK`]-byte reads, so an upload or download holds at most about one chunk in memory (plus
//! hyper's read buffer).

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_lite::Stream;
use glommio::io::{BufferedFile, Directory, OpenOptions};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::http::{text, Body};
use crate::modules::http_upload::web::{self, PutPlan, Reject, UploadFiles};

/// Bytes per disk write (PUT) and read (GET).
const CHUNK: usize = 64 * 1024;
/// Largest meta file read (a name of at most 200 bytes and a content type).
const META_MAX: usize = 1024;

/// Serves one request under `/upload/`.
pub(super) async fn handle(req: Request<Incoming>, files: Rc<UploadFiles>) -> Response<Body> {
    let mut r = match *req.method() {
        Method::OPTIONS => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Method::PUT => put(req, &files).await,
        Method::GET | Method::HEAD => get(&req, &files).await,
        _ => {
            let mut r = reject(Reject::Method);
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(METHODS));
            r
        }
    };
    // Web clients (converse.js) upload from the browser.
    super::http::cors(r.headers_mut(), METHODS);
    r
}

/// What `/upload/` answers.
const METHODS: &str = "PUT, GET, HEAD, OPTIONS";

fn reject(e: Reject) -> Response<Body> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    text(status, format!("{e}\n")).map(Body::Full)
}

async fn put(req: Request<Incoming>, files: &UploadFiles) -> Response<Body> {
    let header = |n| req.headers().get(n).and_then(|v| v.to_str().ok());
    let checked = files.put(
        req.uri().path(),
        req.uri().query(),
        header(header::CONTENT_LENGTH),
        header(header::CONTENT_TYPE),
        crate::store::unix_now(),
    );
    let plan = match checked {
        Ok(plan) => plan,
        Err(e) => return reject(e),
    };
    match store(&plan, req.into_body()).await {
        Ok(()) => text(StatusCode::CREATED, "created\n").map(Body::Full),
        Err(e) => reject(e),
    }
}

/// Creates the slot's meta file exclusively (a second PUT gets `Exists`), then writes the body;
/// on failure both files go, so the client may retry the slot.
async fn store(plan: &PutPlan, body: Incoming) -> Result<(), Reject> {
    let failed = |e: glommio::GlommioError<()>| {
        tracing::warn!(dir = %plan.dir.display(), error = %e, "upload: storing failed");
        Reject::Failed
    };
    // Idempotent: an existing directory is fine, the meta file decides.
    Directory::create(&plan.dir).await.map_err(failed)?;
    let meta_path = plan.dir.join(web::META);
    let meta = OpenOptions::new()
        .write(true)
        .create_new(true)
        .buffered_open(&meta_path)
        .await
        .map_err(|e| match &e {
            glommio::GlommioError::IoError(io)
            | glommio::GlommioError::EnhancedIoError { source: io, .. }
                if io.kind() == io::ErrorKind::AlreadyExists =>
            {
                Reject::Exists
            }
            _ => failed(e),
        })?;
    let mut guard = Cleanup(Some(plan.dir.clone()));
    let wrote = write_all(&meta, &plan.meta, 0).await;
    let _ = meta.close().await;
    wrote.map_err(failed)?;
    write_body(plan, body).await?;
    guard.0 = None;
    Ok(())
}

/// Removes a slot's meta and part files unless the upload completed, also when the request's
/// future is dropped midway (connection gone, shutdown), so the client may retry the slot.
struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            // Drop cannot await, and a spawned task would need a live executor (not so while one
            // shuts down): two unlinks, on failed uploads only, are short enough to do inline.
            let _ = std::fs::remove_file(dir.join(web::PART));
            let _ = std::fs::remove_file(dir.join(web::META));
        }
    }
}

/// Writes the body to the part file as it arrives, in [`CHUNK`]-byte writes, then syncs it (a 201
/// means the file is on disk) and renames it into place.
async fn write_body(plan: &PutPlan, mut body: Incoming) -> Result<(), Reject> {
    let failed = |e: glommio::GlommioError<()>| {
        tracing::warn!(dir = %plan.dir.display(), error = %e, "upload: writing failed");
        Reject::Failed
    };
    let part = plan.dir.join(web::PART);
    let file = BufferedFile::create(&part).await.map_err(failed)?;
    let mut pos = 0u64;
    let mut buf = Vec::with_capacity(CHUNK);
    let result = loop {
        // Each piece of the body must come within the head timeout: a stalled client does not
        // hold the slot and the connection (an upload as a whole may take as long as it needs).
        let frame = match super::http::within(super::http::HEAD_TIMEOUT, body.frame()).await {
            Some(None) => break Ok(()),
            Some(Some(Ok(frame))) => frame,
            // The client went away, broke the framing, or stalled.
            Some(Some(Err(_))) | None => break Err(Reject::Failed),
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        // hyper holds the body to Content-Length, which was checked equal to the slot's size;
        // this keeps the bound even so.
        if pos + (buf.len() + data.len()) as u64 > plan.size {
            break Err(Reject::TooLarge);
        }
        buf.extend_from_slice(&data);
        if buf.len() >= CHUNK {
            if let Err(e) = write_all(&file, &buf, pos).await {
                break Err(failed(e));
            }
            pos += buf.len() as u64;
            buf.clear();
        }
    };
    let result = match result {
        Ok(()) => match write_all(&file, &buf, pos).await {
            Ok(()) => {
                pos += buf.len() as u64;
                file.fdatasync().await.map_err(failed)
            }
            Err(e) => Err(failed(e)),
        },
        Err(e) => Err(e),
    };
    let _ = file.close().await;
    result?;
    if pos != plan.size {
        return Err(Reject::Failed);
    }
    glommio::io::rename(&part, plan.dir.join(web::DATA))
        .await
        .map_err(failed)
}

/// Writes all of `buf` at `pos` (a write may be short). glommio takes each write's buffer: one
/// copy of at most [`CHUNK`] bytes per write. (Not glommio's `StreamWriter`: it panics when polled
/// before its write completed, which hyper's connection task may do.)
async fn write_all(
    file: &BufferedFile,
    buf: &[u8],
    mut pos: u64,
) -> Result<(), glommio::GlommioError<()>> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.write_at(buf[done..].to_vec(), pos).await?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero).into());
        }
        done += n;
        pos += n as u64;
    }
    Ok(())
}

async fn get(req: &Request<Incoming>, files: &UploadFiles) -> Response<Body> {
    let plan = match files.get(req.uri().path()) {
        Ok(plan) => plan,
        Err(e) => return reject(e),
    };
    // Any failure to open or read is a file that is not (or not yet) there.
    let Ok(meta) = read_meta(&plan.dir.join(web::META)).await else {
        return reject(Reject::NotFound);
    };
    let served = match web::served(&meta, &plan.filename) {
        Ok(s) => s,
        Err(e) => return reject(e),
    };
    let Ok(file) = BufferedFile::open(plan.dir.join(web::DATA)).await else {
        return reject(Reject::NotFound);
    };
    let Ok(len) = file.file_size().await else {
        return reject(Reject::NotFound);
    };
    let headers = req.headers();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let if_range = headers.contains_key(header::IF_RANGE);
    let (status, start, end) = match web::byte_range(range, if_range, len) {
        web::Ranged::Whole => (StatusCode::OK, 0, len),
        web::Ranged::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end + 1),
        web::Ranged::Unsatisfiable => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            if let Ok(v) = HeaderValue::try_from(format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let body = if req.method() == Method::HEAD {
        Body::empty()
    } else {
        Body::File(FileBody::new(file, start, end))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        let last = end - 1;
        if let Ok(v) = HeaderValue::try_from(format!("bytes {start}-{last}/{len}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    let value = |s: String| {
        HeaderValue::try_from(s).unwrap_or(HeaderValue::from_static("application/octet-stream"))
    };
    h.insert(header::CONTENT_TYPE, value(served.content_type));
    if let Ok(v) = HeaderValue::try_from(served.disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    r
}

async fn read_meta(path: &std::path::Path) -> Result<Vec<u8>, glommio::GlommioError<()>> {
    let f = BufferedFile::open(path).await?;
    let read = f.read_at(0, META_MAX).await;
    let _ = f.close().await;
    Ok(read?.to_vec())
}

/// A file's bytes `start..end` streamed as a response body, [`CHUNK`] bytes per read.
pub(super) struct FileBody {
    chunks: Pin<Box<dyn Stream<Item = io::Result<Bytes>>>>,
    remaining: u64,
}

impl FileBody {
    fn new(file: BufferedFile, start: u64, end: u64) -> FileBody {
        let file = Rc::new(file);
        let chunks = futures_lite::stream::unfold(start, move |pos| {
            let file = file.clone();
            async move {
                if pos >= end {
                    return None;
                }
                let want = usize::try_from(end - pos).map_or(CHUNK, |r| r.min(CHUNK));
                match file.read_at(pos, want).await {
                    Ok(read) if !read.is_empty() => {
                        let n = read.len() as u64;
                        Some((Ok(Bytes::copy_from_slice(&read)), pos + n))
                    }
                    // Truncated under us: end with an error (the client sees a short body).
                    Ok(_) => Some((Err(io::ErrorKind::UnexpectedEof.into()), end)),
                    Err(e) => Some((Err(io::Error::from(e)), end)),
                }
            }
        });
        FileBody {
            chunks: Box::pin(chunks),
            remaining: end - start,
        }
    }

    /// The next chunk.
    pub(super) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.chunks.as_mut().poll_next(cx).map(|c| {
            c.map(|c| {
                c.map(|b| {
                    self.remaining = self.remaining.saturating_sub(b.len() as u64);
                    Frame::data(b)
                })
            })
        })
    }

    /// Exactly what is left.
    pub(super) fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

impl Body {
    fn empty() -> Body {
        Body::Full(Full::default())
    }
}
