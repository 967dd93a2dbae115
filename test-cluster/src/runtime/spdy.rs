//! A SPDY/3.1 server session, as much of it as the kubelet's streaming API (`exec`) needs: the
//! API server and client-go still reach a kubelet's `exec` through SPDY (moby/spdystream), and
//! no maintained Rust crate serves it. Control and data frames as SPDY/3.1 lays them out; header
//! blocks zlib-compressed with the protocol's dictionary, one zlib stream per direction for the
//! whole connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The SPDY/3 header compression dictionary (the SPDY/3 draft, section 2.6.10.1).
const DICTIONARY: &[u8] = b"\
    \x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post\x00\x00\x00\x03put\x00\
    \x00\x00\x06delete\x00\x00\x00\x05trace\x00\x00\x00\x06accept\x00\x00\x00\x0eaccept-char\
    set\x00\x00\x00\x0faccept-encoding\x00\x00\x00\x0faccept-language\x00\x00\x00\x0daccept-\
    ranges\x00\x00\x00\x03age\x00\x00\x00\x05allow\x00\x00\x00\x0dauthorization\x00\x00\x00\
    \x0dcache-control\x00\x00\x00\x0aconnection\x00\x00\x00\x0ccontent-base\x00\x00\x00\x10c\
    ontent-encoding\x00\x00\x00\x10content-language\x00\x00\x00\x0econtent-length\x00\x00\
    \x00\x10content-location\x00\x00\x00\x0bcontent-md5\x00\x00\x00\x0dcontent-range\x00\x00\
    \x00\x0ccontent-type\x00\x00\x00\x04date\x00\x00\x00\x04etag\x00\x00\x00\x06expect\x00\
    \x00\x00\x07expires\x00\x00\x00\x04from\x00\x00\x00\x04host\x00\x00\x00\x08if-match\x00\
    \x00\x00\x11if-modified-since\x00\x00\x00\x0dif-none-match\x00\x00\x00\x08if-range\x00\
    \x00\x00\x13if-unmodified-since\x00\x00\x00\x0dlast-modified\x00\x00\x00\x08location\x00\
    \x00\x00\x0cmax-forwards\x00\x00\x00\x06pragma\x00\x00\x00\x12proxy-authenticate\x00\x00\
    \x00\x13proxy-authorization\x00\x00\x00\x05range\x00\x00\x00\x07referer\x00\x00\x00\x0br\
    etry-after\x00\x00\x00\x06server\x00\x00\x00\x02te\x00\x00\x00\x07trailer\x00\x00\x00\
    \x11transfer-encoding\x00\x00\x00\x07upgrade\x00\x00\x00\x0auser-agent\x00\x00\x00\x04va\
    ry\x00\x00\x00\x03via\x00\x00\x00\x07warning\x00\x00\x00\x10www-authenticate\x00\x00\x00\
    \x06method\x00\x00\x00\x03get\x00\x00\x00\x06status\x00\x00\x00\x06200 OK\x00\x00\x00\
    \x07version\x00\x00\x00\x08HTTP/1.1\x00\x00\x00\x03url\x00\x00\x00\x06public\x00\x00\x00\
    \x0aset-cookie\x00\x00\x00\x0akeep-alive\x00\x00\x00\x06origin10010120120220520630030230\
    3304305306307402405406407408409410411412413414415416417502504505203 Non-Authoritative In\
    formation204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden\
    404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb \
    Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT\
    chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,te\
    xt/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-\
    8859-1,utf-,*,enq=0.";

const VERSION: u16 = 3;
const CONTROL_BIT: u32 = 0x8000_0000;
const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// A decompressed header block larger than this ends the session: no client of `exec` sends more
/// than a few headers.
const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// How many frames may wait for the connection before senders wait.
const FRAMES_IN_FLIGHT: usize = 64;
/// How long the end of a session may wait for a client that does not read.
const END_WITHIN: Duration = Duration::from_secs(10);

/// A header block's names (lower case) and values (several values of one name joined by NUL).
pub type Headers = Vec<(String, String)>;

/// One SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream: u32,
        associated: u32,
        priority: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    SynReply {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Settings {
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream: u32,
        status: u32,
    },
    Headers {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream: u32,
        delta: u32,
    },
    Data {
        stream: u32,
        fin: bool,
        data: Vec<u8>,
    },
}

/// One entry of a SETTINGS frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

/// Why a session ended before its end.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("SPDY version {0} is not 3")]
    Version(u16),
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    #[error("header block: {0}")]
    HeaderBlock(String),
}

/// The compressing side of the header blocks this end writes.
pub struct HeaderCompressor(Compress);

impl HeaderCompressor {
    pub fn new() -> Result<HeaderCompressor, SpdyError> {
        let mut compress = Compress::new(Compression::best(), true);
        compress
            .set_dictionary(DICTIONARY)
            .map_err(|e| SpdyError::HeaderBlock(e.to_string()))?;
        Ok(HeaderCompressor(compress))
    }

    /// `block` compressed and sync-flushed, so the peer can decode it alone.
    fn compress(&mut self, block: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let start = self.0.total_in();
        let mut compressed = Vec::with_capacity(block.len() / 2 + 64);
        loop {
            let consumed = (self.0.total_in() - start) as usize;
            compressed.reserve(256);
            self.0
                .compress_vec(&block[consumed..], &mut compressed, FlushCompress::Sync)
                .map_err(|e| SpdyError::HeaderBlock(e.to_string()))?;
            // A sync flush is complete once the input is taken and the output had room to spare.
            if (self.0.total_in() - start) as usize == block.len()
                && compressed.len() < compressed.capacity()
            {
                return Ok(compressed);
            }
        }
    }
}

/// The decompressing side of the header blocks the peer writes.
pub struct HeaderDecompressor(Decompress);

impl HeaderDecompressor {
    pub fn new() -> HeaderDecompressor {
        HeaderDecompressor(Decompress::new(true))
    }

    fn decompress(&mut self, compressed: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let failed = |e: flate2::DecompressError| SpdyError::HeaderBlock(e.to_string());
        let start = self.0.total_in();
        let mut block = Vec::with_capacity(compressed.len() * 4 + 64);
        loop {
            let consumed = (self.0.total_in() - start) as usize;
            let produced_before = self.0.total_out();
            match self
                .0
                .decompress_vec(&compressed[consumed..], &mut block, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0.set_dictionary(DICTIONARY).map_err(failed)?;
                    continue;
                }
                Err(e) => return Err(failed(e)),
            }
            let all_taken = (self.0.total_in() - start) as usize == compressed.len();
            if all_taken && block.len() < block.capacity() {
                return Ok(block);
            }
            if block.len() >= MAX_HEADER_BLOCK {
                return Err(SpdyError::HeaderBlock("too large".into()));
            }
            if block.len() == block.capacity() {
                block.reserve(block.capacity());
            } else if self.0.total_out() == produced_before {
                return Err(SpdyError::HeaderBlock("truncated".into()));
            }
        }
    }
}

fn header_block(headers: &Headers) -> Vec<u8> {
    let mut block = Vec::new();
    block.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, value) in headers {
        for text in [name.to_ascii_lowercase().as_bytes(), value.as_bytes()] {
            block.extend_from_slice(&(text.len() as u32).to_be_bytes());
            block.extend_from_slice(text);
        }
    }
    block
}

/// A big-endian `u32` at `offset` of a frame's payload.
fn u32_at(payload: &[u8], offset: usize, frame: &'static str) -> Result<u32, SpdyError> {
    payload
        .get(offset..offset + 4)
        .map(|bytes| u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        .ok_or(SpdyError::Malformed(frame))
}

fn parse_header_block(block: &[u8]) -> Result<Headers, SpdyError> {
    let malformed = || SpdyError::HeaderBlock("malformed".into());
    let count = u32_at(block, 0, "header block").map_err(|_| malformed())?;
    let mut offset = 4;
    let mut text = || -> Result<String, SpdyError> {
        let length = u32_at(block, offset, "header block").map_err(|_| malformed())? as usize;
        let bytes = block
            .get(offset + 4..offset + 4 + length)
            .ok_or_else(malformed)?;
        offset += 4 + length;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    };
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = text()?;
        let value = text()?;
        headers.push((name, value));
    }
    Ok(headers)
}

impl Frame {
    /// The frame as it goes on the wire, its header block (if any) compressed by `compressor`.
    pub fn encode(&self, compressor: &mut HeaderCompressor) -> Result<Vec<u8>, SpdyError> {
        let flag = |set: bool, flag: u8| if set { flag } else { 0 };
        let (kind, flags, payload) = match self {
            Frame::Data { stream, fin, data } => {
                let mut frame = (stream & !CONTROL_BIT).to_be_bytes().to_vec();
                frame.extend_from_slice(&length_with_flags(flag(*fin, FLAG_FIN), data.len())?);
                frame.extend_from_slice(data);
                return Ok(frame);
            }
            Frame::SynStream {
                stream,
                associated,
                priority,
                fin,
                unidirectional,
                headers,
            } => {
                let mut payload = stream.to_be_bytes().to_vec();
                payload.extend_from_slice(&associated.to_be_bytes());
                payload.extend_from_slice(&[priority << 5, 0]);
                payload.extend(compressor.compress(&header_block(headers))?);
                let flags = flag(*fin, FLAG_FIN) | flag(*unidirectional, FLAG_UNIDIRECTIONAL);
                (SYN_STREAM, flags, payload)
            }
            Frame::SynReply {
                stream,
                fin,
                headers,
            }
            | Frame::Headers {
                stream,
                fin,
                headers,
            } => {
                let kind = match self {
                    Frame::SynReply { .. } => SYN_REPLY,
                    _ => HEADERS,
                };
                let mut payload = stream.to_be_bytes().to_vec();
                payload.extend(compressor.compress(&header_block(headers))?);
                (kind, flag(*fin, FLAG_FIN), payload)
            }
            Frame::RstStream { stream, status } => (RST_STREAM, 0, pair(*stream, *status)),
            Frame::Settings { entries } => {
                let mut payload = (entries.len() as u32).to_be_bytes().to_vec();
                for entry in entries {
                    payload.extend_from_slice(
                        &((u32::from(entry.flags) << 24) | (entry.id & 0xff_ffff)).to_be_bytes(),
                    );
                    payload.extend_from_slice(&entry.value.to_be_bytes());
                }
                (SETTINGS, 0, payload)
            }
            Frame::Ping { id } => (PING, 0, id.to_be_bytes().to_vec()),
            Frame::GoAway {
                last_good_stream,
                status,
            } => (GOAWAY, 0, pair(*last_good_stream, *status)),
            Frame::WindowUpdate { stream, delta } => (WINDOW_UPDATE, 0, pair(*stream, *delta)),
        };
        let mut frame = ((CONTROL_BIT >> 16) as u16 | VERSION)
            .to_be_bytes()
            .to_vec();
        frame.extend_from_slice(&kind.to_be_bytes());
        frame.extend_from_slice(&length_with_flags(flags, payload.len())?);
        frame.extend(payload);
        Ok(frame)
    }

    /// The frame whose first eight bytes are `head` and whose payload (of the length the head
    /// gives) follows; `None` for a control frame of a type SPDY/3.1 does not define, which a
    /// receiver ignores.
    pub fn decode(
        head: [u8; 8],
        payload: &[u8],
        decompressor: &mut HeaderDecompressor,
    ) -> Result<Option<Frame>, SpdyError> {
        let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let flags = head[4];
        let fin = flags & FLAG_FIN != 0;
        if first & CONTROL_BIT == 0 {
            if first == 0 {
                return Err(SpdyError::Malformed("DATA"));
            }
            return Ok(Some(Frame::Data {
                stream: first,
                fin,
                data: payload.to_vec(),
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let frame = match (first & 0xffff) as u16 {
            SYN_STREAM => {
                let priority = payload.get(8).ok_or(SpdyError::Malformed("SYN_STREAM"))? >> 5;
                let block = payload
                    .get(10..)
                    .ok_or(SpdyError::Malformed("SYN_STREAM"))?;
                Frame::SynStream {
                    stream: u32_at(payload, 0, "SYN_STREAM")? & !CONTROL_BIT,
                    associated: u32_at(payload, 4, "SYN_STREAM")? & !CONTROL_BIT,
                    priority,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers: parse_header_block(&decompressor.decompress(block)?)?,
                }
            }
            kind @ (SYN_REPLY | HEADERS) => {
                let stream = u32_at(payload, 0, "SYN_REPLY")? & !CONTROL_BIT;
                let headers = parse_header_block(&decompressor.decompress(&payload[4..])?)?;
                if kind == SYN_REPLY {
                    Frame::SynReply {
                        stream,
                        fin,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream,
                        fin,
                        headers,
                    }
                }
            }
            RST_STREAM => Frame::RstStream {
                stream: u32_at(payload, 0, "RST_STREAM")? & !CONTROL_BIT,
                status: u32_at(payload, 4, "RST_STREAM")?,
            },
            SETTINGS => {
                let count = u32_at(payload, 0, "SETTINGS")? as usize;
                let entries = (0..count)
                    .map(|index| {
                        let flags_and_id = u32_at(payload, 4 + index * 8, "SETTINGS")?;
                        Ok(Setting {
                            flags: (flags_and_id >> 24) as u8,
                            id: flags_and_id & 0xff_ffff,
                            value: u32_at(payload, 8 + index * 8, "SETTINGS")?,
                        })
                    })
                    .collect::<Result<_, SpdyError>>()?;
                Frame::Settings { entries }
            }
            PING => Frame::Ping {
                id: u32_at(payload, 0, "PING")?,
            },
            GOAWAY => Frame::GoAway {
                last_good_stream: u32_at(payload, 0, "GOAWAY")? & !CONTROL_BIT,
                status: u32_at(payload, 4, "GOAWAY")?,
            },
            WINDOW_UPDATE => Frame::WindowUpdate {
                stream: u32_at(payload, 0, "WINDOW_UPDATE")? & !CONTROL_BIT,
                delta: u32_at(payload, 4, "WINDOW_UPDATE")? & !CONTROL_BIT,
            },
            _ => return Ok(None),
        };
        Ok(Some(frame))
    }
}

fn pair(first: u32, second: u32) -> Vec<u8> {
    [first.to_be_bytes(), second.to_be_bytes()].concat()
}

/// A frame's flags and 24-bit length.
fn length_with_flags(flags: u8, length: usize) -> Result<[u8; 4], SpdyError> {
    if length > 0xff_ffff {
        return Err(SpdyError::Malformed("oversized"));
    }
    Ok(((u32::from(flags) << 24) | length as u32).to_be_bytes())
}

/// Reads one frame, skipping control frames of unknown types.
async fn read_frame(
    connection: &mut (impl AsyncRead + Unpin),
    decompressor: &mut HeaderDecompressor,
) -> Result<Frame, SpdyError> {
    loop {
        let mut head = [0u8; 8];
        connection.read_exact(&mut head).await?;
        let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut payload = vec![0u8; length];
        connection.read_exact(&mut payload).await?;
        if let Some(frame) = Frame::decode(head, &payload, decompressor)? {
            return Ok(frame);
        }
    }
}

/// What the client does on the session, as the server's side sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The client opened a stream (the server has replied to it).
    Opened {
        stream: u32,
        headers: Headers,
    },
    Data {
        stream: u32,
        data: Vec<u8>,
    },
    /// The client will send no more on the stream (FIN or RST_STREAM).
    Finished {
        stream: u32,
    },
}

/// The server's side of a SPDY/3.1 session: the client's streams arrive as [`Event`]s (the
/// session replies to each stream, answers PINGs and returns the window of all data received),
/// and the server writes data frames on them.
///
/// Output is not held to the client's window: moby/spdystream, the only SPDY client of a kubelet
/// (the API server's and client-go's), never returns window, so output beyond the first 64 KiB
/// would wait forever.
pub struct Session {
    pub events: mpsc::Receiver<Event>,
    frames: mpsc::Sender<Frame>,
    /// The last stream the client opened, which GOAWAY names.
    last_opened: Arc<AtomicU32>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

/// The session's connection is gone.
#[derive(Debug, thiserror::Error)]
#[error("the SPDY session is closed")]
pub struct SessionClosed;

impl Session {
    pub fn start(
        connection: impl AsyncRead + AsyncWrite + Send + 'static,
    ) -> Result<Session, SpdyError> {
        let compressor = HeaderCompressor::new()?;
        let (read, write) = tokio::io::split(connection);
        let (frames, outgoing) = mpsc::channel(FRAMES_IN_FLIGHT);
        let (incoming, events) = mpsc::channel(FRAMES_IN_FLIGHT);
        let last_opened = Arc::new(AtomicU32::new(0));
        Ok(Session {
            events,
            reader: tokio::spawn(read_frames(
                read,
                incoming,
                frames.clone(),
                last_opened.clone(),
            )),
            last_opened,
            writer: tokio::spawn(write_frames(write, outgoing, compressor)),
            frames,
        })
    }

    /// Sends `data` on `stream`, ending the server's side of it with `fin`.
    pub async fn send(&self, stream: u32, data: Vec<u8>, fin: bool) -> Result<(), SessionClosed> {
        self.frames
            .send(Frame::Data { stream, fin, data })
            .await
            .map_err(|_| SessionClosed)
    }

    /// Ends the session as a kubelet does once a command has ended: GOAWAY, everything written,
    /// the connection closed.
    pub async fn end(mut self) {
        let last_good_stream = self.last_opened.load(Ordering::Relaxed);
        let _ = self
            .frames
            .send(Frame::GoAway {
                last_good_stream,
                status: 0,
            })
            .await;
        drop(self.frames);
        if tokio::time::timeout(END_WITHIN, &mut self.writer)
            .await
            .is_err()
        {
            self.writer.abort();
        }
        self.reader.abort();
    }
}

/// Turns the client's frames into events, answering what the session itself answers.
async fn read_frames(
    mut connection: impl AsyncRead + Unpin,
    events: mpsc::Sender<Event>,
    frames: mpsc::Sender<Frame>,
    last_opened: Arc<AtomicU32>,
) {
    let mut decompressor = HeaderDecompressor::new();
    while let Ok(frame) = read_frame(&mut connection, &mut decompressor).await {
        let (answers, event, finished) = match frame {
            Frame::SynStream {
                stream,
                fin,
                unidirectional,
                headers,
                ..
            } => {
                last_opened.fetch_max(stream, Ordering::Relaxed);
                (
                    vec![Frame::SynReply {
                        stream,
                        fin: false,
                        headers: Vec::new(),
                    }],
                    Some(Event::Opened { stream, headers }),
                    (fin || unidirectional).then_some(stream),
                )
            }
            Frame::Data { stream, fin, data } => {
                let delta = data.len() as u32;
                let mut answers = Vec::new();
                if delta > 0 {
                    answers.push(Frame::WindowUpdate { stream: 0, delta });
                    if !fin {
                        answers.push(Frame::WindowUpdate { stream, delta });
                    }
                }
                let event = (!data.is_empty()).then_some(Event::Data { stream, data });
                (answers, event, fin.then_some(stream))
            }
            Frame::RstStream { stream, .. } => (Vec::new(), None, Some(stream)),
            Frame::Ping { id } => (vec![Frame::Ping { id }], None, None),
            Frame::GoAway { .. } => return,
            Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::Settings { .. }
            | Frame::WindowUpdate { .. } => (Vec::new(), None, None),
        };
        for answer in answers {
            if frames.send(answer).await.is_err() {
                return;
            }
        }
        let finished = finished.map(|stream| Event::Finished { stream });
        for event in event.into_iter().chain(finished) {
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// Writes the server's frames until the session ends (GOAWAY) or the connection fails.
async fn write_frames(
    mut connection: impl AsyncWrite + Unpin,
    mut frames: mpsc::Receiver<Frame>,
    mut compressor: HeaderCompressor,
) {
    while let Some(frame) = frames.recv().await {
        let last = matches!(frame, Frame::GoAway { .. });
        let Ok(bytes) = frame.encode(&mut compressor) else {
            return;
        };
        if connection.write_all(&bytes).await.is_err() || connection.flush().await.is_err() {
            return;
        }
        if last {
            let _ = connection.shutdown().await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frames: &[Frame]) -> Vec<Frame> {
        let mut compressor = HeaderCompressor::new().unwrap();
        let mut decompressor = HeaderDecompressor::new();
        frames
            .iter()
            .map(|frame| {
                let wire = frame.encode(&mut compressor).unwrap();
                let head: [u8; 8] = wire[..8].try_into().unwrap();
                let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
                assert_eq!(wire.len(), 8 + length, "{frame:?}");
                Frame::decode(head, &wire[8..], &mut decompressor)
                    .unwrap()
                    .unwrap()
            })
            .collect()
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn the_dictionary_is_the_spdy_3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert!(DICTIONARY.starts_with(b"\x00\x00\x00\x07options\x00\x00\x00\x04head"));
        assert!(DICTIONARY.ends_with(b"iso-8859-1,utf-,*,enq=0."));
    }

    #[test]
    fn every_frame_type_survives_encoding_and_decoding() {
        let frames = vec![
            Frame::SynStream {
                stream: 1,
                associated: 0,
                priority: 7,
                fin: false,
                unidirectional: true,
                headers: headers(&[("streamtype", "error"), ("multi", "a\0b")]),
            },
            Frame::SynReply {
                stream: 1,
                fin: false,
                headers: Vec::new(),
            },
            Frame::SynStream {
                stream: 3,
                associated: 1,
                priority: 0,
                fin: true,
                unidirectional: false,
                headers: headers(&[("streamtype", "stdout")]),
            },
            Frame::Headers {
                stream: 3,
                fin: true,
                headers: headers(&[("x-extra", "1")]),
            },
            Frame::RstStream {
                stream: 3,
                status: 5,
            },
            Frame::Settings {
                entries: vec![
                    Setting {
                        flags: 1,
                        id: 7,
                        value: 65536,
                    },
                    Setting {
                        flags: 0,
                        id: 4,
                        value: 100,
                    },
                ],
            },
            Frame::Ping { id: 1 },
            Frame::GoAway {
                last_good_stream: 9,
                status: 0,
            },
            Frame::WindowUpdate {
                stream: 0,
                delta: 1024,
            },
            Frame::Data {
                stream: 5,
                fin: true,
                data: b"hello".to_vec(),
            },
            Frame::Data {
                stream: 5,
                fin: false,
                data: Vec::new(),
            },
        ];
        assert_eq!(round_trip(&frames), frames);
    }

    #[test]
    fn header_blocks_are_compressed_with_the_dictionary_for_any_fresh_decompressor() {
        let mut compressor = HeaderCompressor::new().unwrap();
        let block = header_block(&headers(&[("streamtype", "stdin")]));
        let compressed = compressor.compress(&block).unwrap();
        let dictionary_id = Compress::new(Compression::best(), true)
            .set_dictionary(DICTIONARY)
            .unwrap();
        let mut fresh = Decompress::new(true);
        let mut out = Vec::with_capacity(1024);
        let asked = fresh
            .decompress_vec(&compressed, &mut out, FlushDecompress::Sync)
            .unwrap_err()
            .needs_dictionary();
        assert_eq!(asked, Some(dictionary_id));
        fresh.set_dictionary(DICTIONARY).unwrap();
        let consumed = fresh.total_in() as usize;
        fresh
            .decompress_vec(&compressed[consumed..], &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out, block);
    }

    #[test]
    fn header_blocks_written_by_moby_spdystream_are_read() {
        // Two SYN_STREAMs as spdystream v0.5.0's framer writes them (one zlib stream).
        let wire = b"\x80\x03\x00\x01\x00\x00\x00\x29\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\
            \x78\xf9\xe3\xc6\xa7\xc2\x62\x60\x60\x60\x04\xa7\xb3\x92\xa2\xd4\xc4\x5c\x68\x51\xc2\
            \x9a\x0a\x0a\x68\x00\x00\x00\x00\xff\xff\
            \x80\x03\x00\x01\x00\x00\x00\x19\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\
            \xc2\x2a\xc5\x56\x5c\x92\x92\x5f\x5a\x02\x00\x00\x00\xff\xff";
        let mut decompressor = HeaderDecompressor::new();
        let mut rest = &wire[..];
        let mut streams = Vec::new();
        while !rest.is_empty() {
            let head: [u8; 8] = rest[..8].try_into().unwrap();
            let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
            let frame = Frame::decode(head, &rest[8..8 + length], &mut decompressor).unwrap();
            streams.push(frame.unwrap());
            rest = &rest[8 + length..];
        }
        let syn = |stream, kind| Frame::SynStream {
            stream,
            associated: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers: headers(&[("streamtype", kind)]),
        };
        assert_eq!(streams, vec![syn(1, "error"), syn(3, "stdout")]);
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let mut decompressor = HeaderDecompressor::new();
        let control = |kind: u16, length: u8| {
            let [high, low] = kind.to_be_bytes();
            [0x80, 3, high, low, 0, 0, 0, length]
        };
        for (head, payload) in [
            (control(SYN_STREAM, 3), &b"\0\0\0"[..]),
            (control(SYN_REPLY, 8), b"\0\0\0\x01garbage!"),
            (control(SETTINGS, 4), b"\0\0\0\x09"),
            (control(PING, 0), b""),
            ([0x80, 2, 0, 1, 0, 0, 0, 0], b""),
            ([0, 0, 0, 0, 0, 0, 0, 1], b"x"),
        ] {
            assert!(
                Frame::decode(head, payload, &mut decompressor).is_err(),
                "{head:?}"
            );
        }
        assert_eq!(
            Frame::decode(control(0x0a, 0), b"", &mut decompressor).unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_session_replies_to_streams_answers_pings_and_returns_window() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut session = Session::start(server).unwrap();
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let mut compressor = HeaderCompressor::new().unwrap();
        let mut decompressor = HeaderDecompressor::new();
        // Each frame's answers are queued before its events, so the order below is the wire's.
        for frame in [
            Frame::Ping { id: 3 },
            Frame::SynStream {
                stream: 1,
                associated: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers: headers(&[("streamtype", "stdin")]),
            },
            Frame::Data {
                stream: 1,
                fin: true,
                data: b"input".to_vec(),
            },
        ] {
            let wire = frame.encode(&mut compressor).unwrap();
            client_write.write_all(&wire).await.unwrap();
        }
        assert_eq!(
            session.events.recv().await,
            Some(Event::Opened {
                stream: 1,
                headers: headers(&[("streamtype", "stdin")])
            })
        );
        assert_eq!(
            session.events.recv().await,
            Some(Event::Data {
                stream: 1,
                data: b"input".to_vec()
            })
        );
        assert_eq!(
            session.events.recv().await,
            Some(Event::Finished { stream: 1 })
        );
        session.send(1, b"output".to_vec(), true).await.unwrap();
        session.end().await;
        let mut received = Vec::new();
        while let Ok(frame) = read_frame(&mut client_read, &mut decompressor).await {
            received.push(frame);
        }
        assert_eq!(
            received,
            vec![
                Frame::Ping { id: 3 },
                Frame::SynReply {
                    stream: 1,
                    fin: false,
                    headers: Vec::new()
                },
                Frame::WindowUpdate {
                    stream: 0,
                    delta: 5
                },
                Frame::Data {
                    stream: 1,
                    fin: true,
                    data: b"output".to_vec()
                },
                Frame::GoAway {
                    last_good_stream: 1,
                    status: 0
                },
            ]
        );
    }
}
