//! A client's WebSocket after the handshake: its frames (RFC 6455, section 5) read into
//! messages and messages written as frames, server side.
//!
//! Written here, around tungstenite's `FrameHeader` (which parses and formats the headers),
//! rather than taken whole from tungstenite's `WebSocket`: that keeps one read buffer per
//! connection, grown to the largest frame the connection ever read and never given back (each
//! frame is split off it, and the empty tail keeps the allocation), and copies every message
//! it writes into a write buffer kept the same way. A server with thousands of idle
//! connections pays for both on each of them. Here an idle connection holds no buffer:
//! - a read goes into a buffer on the stack, and a frame that arrives whole is taken from there
//!   straight into its message; only a frame split across reads (or frames read behind one
//!   already taken) waits on the heap, and that memory is freed as soon as it is used;
//! - a message is written from its shared bytes, behind its header (and its `seq`, which is
//!   written in front of its fields rather than copied into a new message): a small one copied
//!   with its header into a buffer on the stack and written in one plain write (cheaper for the
//!   kernel than a vectored write), a large one in one vectored write;
//! - a data frame over the size limit is skipped as it arrives, never held, and reported.

use std::io::{self, Cursor, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use hearth_proto::{SEQ_HEAD_MAX, SeqHead, seq_parts};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tracing::debug;

/// Bytes read from the socket in one go, into a buffer on the stack.
const READ_CHUNK: usize = 8 * 1024;
/// A server's frame header: two bytes, then up to eight of length (it sends no mask).
const HEADER_MAX: usize = 10;
/// What goes before a message's payload at most: its frame header and its `seq`.
const HEAD_MAX: usize = HEADER_MAX + SEQ_HEAD_MAX;
/// Frames up to this size are copied whole into one buffer on the stack and written with one
/// plain write.
const SMALL_FRAME: usize = 2 * 1024;
/// The longest payload of a control frame (section 5.5).
const CONTROL_MAX: u64 = 125;

/// WebSocket close code for "normal closure".
pub(crate) const CLOSE_NORMAL: u16 = 1000;
/// WebSocket close code for "going away", used on shutdown and for idle connections.
pub(crate) const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket close code for "policy violation", used with an error code as the reason.
pub(crate) const CLOSE_POLICY: u16 = 1008;
/// WebSocket close code for "protocol error".
const CLOSE_PROTOCOL: u16 = 1002;
/// WebSocket close code for "invalid frame payload data" (text that is not UTF-8).
const CLOSE_INVALID_DATA: u16 = 1007;

/// What a client sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A text message.
    Text(Utf8Bytes),
    /// A binary message, and its size: its bytes are not kept.
    Binary(usize),
    /// A data message over the size limit, and its size: its bytes were skipped.
    TooLarge(usize),
    /// A ping, and what it carries (its pong must echo it).
    Ping(Bytes),
    /// A pong, and what it echoes.
    Pong(Bytes),
    /// The client's close frame, or a frame that breaks the protocol: the connection ends, and
    /// the server's close frame answers with this code and reason.
    Close { code: u16, reason: &'static str },
}

/// What the server sends.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A JSON object, given `"seq":N` as its first field when it has a `seq`.
    Text {
        text: Utf8Bytes,
        seq: Option<u64>,
    },
    Ping(Bytes),
    Pong(Bytes),
    Close {
        code: u16,
        reason: &'static str,
    },
}

/// What is read of a client's socket and not yet taken as messages. The stream itself is kept
/// apart (see [`crate::outlet`]): reading is the connection's own task's, writing is whoever's
/// turn it is.
pub(crate) struct Receiving {
    /// Bytes read but not yet taken as frames, from `taken` on: empty, with nothing allocated,
    /// between frames.
    pending: Vec<u8>,
    /// How much of `pending` is taken: moved out only before the next read, so that many small
    /// frames read at once are not each moved along what follows them.
    taken: usize,
    reader: Reader,
}

impl Receiving {
    /// Reading a connection of which `read` was read already (what the client sent right
    /// behind its handshake); data messages over `max_message` bytes are skipped and reported
    /// as [`Incoming::TooLarge`].
    pub(crate) fn new(read: &[u8], max_message: usize) -> Receiving {
        Receiving {
            pending: read.to_vec(),
            taken: 0,
            reader: Reader::new(max_message),
        }
    }

    /// The next message read from `io`, or `None` when the connection is over (the client hung
    /// up, or reading failed, which is logged here).
    pub(crate) fn poll_next<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Incoming>> {
        loop {
            if !self.pending.is_empty() {
                let (used, item) = self.reader.step(&self.pending[self.taken..]);
                self.taken += used;
                if self.taken == self.pending.len() {
                    self.pending = Vec::new();
                    self.taken = 0;
                }
                if item.is_some() {
                    return Poll::Ready(item);
                }
                if used > 0 {
                    continue;
                }
                // What is left is the start of a frame: the rest is read behind it, and what a
                // large frame made room for is given back.
                self.pending.drain(..self.taken);
                self.taken = 0;
                if self.pending.capacity() > READ_CHUNK.max(2 * self.pending.len()) {
                    self.pending.shrink_to(READ_CHUNK);
                }
            }
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut chunk);
            match ready!(Pin::new(&mut *io).poll_read(cx, &mut buf)) {
                Ok(()) if buf.filled().is_empty() => return Poll::Ready(None),
                Ok(()) => {}
                Err(e) => {
                    debug!(error = %e, "socket read failed");
                    return Poll::Ready(None);
                }
            }
            let mut read = buf.filled();
            if self.pending.is_empty() {
                // Frames that arrived whole are taken straight from the stack.
                loop {
                    let (used, item) = self.reader.step(read);
                    read = &read[used..];
                    if item.is_some() {
                        self.pending.extend_from_slice(read);
                        return Poll::Ready(item);
                    }
                    if used == 0 || read.is_empty() {
                        break;
                    }
                }
            }
            self.pending.extend_from_slice(read);
        }
    }
}

/// The frame being written to a client's socket, as far as the socket has not taken it yet.
#[derive(Debug, Default)]
pub(crate) struct Sending {
    writing: Option<Writing>,
}

impl Sending {
    /// Makes `message` the frame to write; [`Sending::poll_flush`] writes it. One frame is
    /// written at a time: starting another before the last one went is an error (the stream
    /// would be corrupted), which ends the connection.
    pub(crate) fn start(&mut self, message: Outgoing) -> io::Result<()> {
        if self.writing.is_some() {
            return Err(io::Error::other("a frame is still being written"));
        }
        let (opcode, payload, seq) = match message {
            Outgoing::Text { text, seq } => {
                // The `seq` takes the place of the object's opening brace.
                let seq = seq.map(|seq| {
                    let (head, rest) = seq_parts(text.as_str(), seq);
                    (head, text.len() - rest.len())
                });
                let mut payload = Bytes::from(text);
                let seq = seq.map(|(head, brace)| {
                    payload.advance(brace);
                    head
                });
                (OpCode::Data(Data::Text), payload, seq)
            }
            Outgoing::Ping(data) => (OpCode::Control(Control::Ping), data, None),
            Outgoing::Pong(data) => (OpCode::Control(Control::Pong), data, None),
            Outgoing::Close { code, reason } => {
                let mut payload = Vec::with_capacity(2 + reason.len());
                payload.extend_from_slice(&code.to_be_bytes());
                payload.extend_from_slice(reason.as_bytes());
                (OpCode::Control(Control::Close), Bytes::from(payload), None)
            }
        };
        let header = FrameHeader {
            opcode,
            is_final: true,
            ..FrameHeader::default()
        };
        let seq = seq.as_ref().map_or(&[][..], SeqHead::as_bytes);
        let mut head = Cursor::new([0u8; HEAD_MAX]);
        header
            .format((seq.len() + payload.len()) as u64, &mut head)
            .map_err(io::Error::other)?;
        io::Write::write_all(&mut head, seq)?;
        let head_len = head.position() as u8;
        self.writing = Some(Writing {
            head: head.into_inner(),
            head_len,
            payload,
            written: 0,
        });
        Ok(())
    }

    /// Writes to `io` what is left of the frame being written; `Ready(Ok)` once all of it went
    /// (or nothing was being written).
    pub(crate) fn poll_flush<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while let Some(w) = &mut self.writing {
            let head = usize::from(w.head_len);
            let body = &w.payload;
            let written = if w.written >= head {
                ready!(Pin::new(&mut *io).poll_write(cx, &body[w.written - head..]))?
            } else if head - w.written + body.len() <= SMALL_FRAME {
                let mut frame = [0u8; SMALL_FRAME];
                let (front, back) = frame.split_at_mut(head - w.written);
                front.copy_from_slice(&w.head[w.written..head]);
                back[..body.len()].copy_from_slice(body);
                let len = front.len() + body.len();
                ready!(Pin::new(&mut *io).poll_write(cx, &frame[..len]))?
            } else {
                let parts = [IoSlice::new(&w.head[w.written..head]), IoSlice::new(body)];
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &parts))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            w.written += written;
            if w.written == head + body.len() {
                self.writing = None;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Whether part of a frame is still to be written.
    pub(crate) fn is_writing(&self) -> bool {
        self.writing.is_some()
    }

    /// Writes what is left, then ends the connection's sending side.
    pub(crate) fn poll_close<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_flush(io, cx))?;
        Pin::new(io).poll_shutdown(cx)
    }
}

#[derive(Debug)]
struct Writing {
    /// The frame header, then the message's `seq` when it has one.
    head: [u8; HEAD_MAX],
    head_len: u8,
    /// Without its opening brace when a `seq` took its place.
    payload: Bytes,
    /// Of the head and the payload, in that order.
    written: usize,
}

/// Turns frames into messages: what is kept between frames of a message in several.
struct Reader {
    max_message: usize,
    /// The message in several frames being put together, unmasked.
    message: Vec<u8>,
    /// What kind it is, when one is begun.
    kind: Option<Kind>,
    /// Payload bytes still to skip, of a frame over the limit.
    skip: u64,
    /// Whether the frame being skipped is its message's last.
    skip_final: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
    /// Over the limit, this many bytes so far: the rest of it is skipped too.
    TooLarge(usize),
}

impl Reader {
    fn new(max_message: usize) -> Reader {
        Reader {
            max_message,
            message: Vec::new(),
            kind: None,
            skip: 0,
            skip_final: false,
        }
    }

    /// Takes what it can of one frame from the start of `input`: the bytes it used, and the
    /// message when one is complete. Uses nothing while `input` holds neither a whole frame nor
    /// anything to skip.
    fn step(&mut self, input: &[u8]) -> (usize, Option<Incoming>) {
        if self.skip > 0 {
            let used = usize::try_from(self.skip).map_or(input.len(), |s| s.min(input.len()));
            self.skip -= used as u64;
            let done = self.skip == 0 && self.skip_final;
            return (used, if done { self.finish_too_large() } else { None });
        }
        let mut cursor = Cursor::new(input);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return (0, None),
            Err(e) => return (input.len(), Some(broken(&e.to_string()))),
        };
        let start = cursor.position() as usize;
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return (input.len(), Some(broken("reserved bits set")));
        }
        let Some(mask) = header.mask else {
            return (input.len(), Some(broken("a client's frame is not masked")));
        };
        if let OpCode::Control(_) = header.opcode
            && (!header.is_final || len > CONTROL_MAX)
        {
            return (
                input.len(),
                Some(broken("a control frame is split or too long")),
            );
        }
        // The kind of message this frame carries a part of, checked before it is read whole:
        // a frame over the limit is skipped as it arrives.
        let mut kind = None;
        if let OpCode::Data(data) = header.opcode {
            let this = match (data, self.kind) {
                (Data::Continue, Some(kind)) => kind,
                (Data::Text, None) => Kind::Text,
                (Data::Binary, None) => Kind::Binary,
                (Data::Continue, None) => {
                    return (
                        input.len(),
                        Some(broken("a continuation with nothing to continue")),
                    );
                }
                _ => return (input.len(), Some(broken("a new message inside another"))),
            };
            let so_far = match this {
                Kind::TooLarge(n) => n,
                _ => self.message.len(),
            };
            let total = usize::try_from(len).map_or(usize::MAX, |l| so_far.saturating_add(l));
            if matches!(this, Kind::TooLarge(_)) || total > self.max_message {
                self.message = Vec::new();
                self.kind = Some(Kind::TooLarge(total));
                self.skip = len;
                self.skip_final = header.is_final;
                if len == 0 && header.is_final {
                    return (start, self.finish_too_large());
                }
                return (start, None);
            }
            kind = Some(this);
        }
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|&end| end <= input.len())
        else {
            return (0, None);
        };
        // Only now, with the whole frame here: a frame seen in part is parsed again later.
        if kind.is_some() {
            self.kind = kind;
        }
        let used = end;
        let mut payload = input[start..end].to_vec();
        unmask(&mut payload, mask);
        let item = match header.opcode {
            OpCode::Control(Control::Ping) => Some(Incoming::Ping(payload.into())),
            OpCode::Control(Control::Pong) => Some(Incoming::Pong(payload.into())),
            OpCode::Control(Control::Close) => Some(close_answer(&payload)),
            OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                Some(broken("a reserved opcode"))
            }
            OpCode::Data(_) if !header.is_final => {
                if self.message.is_empty() {
                    self.message = payload;
                } else {
                    self.message.extend_from_slice(&payload);
                }
                None
            }
            OpCode::Data(_) => {
                let whole = if self.message.is_empty() {
                    payload
                } else {
                    let mut m = std::mem::take(&mut self.message);
                    m.extend_from_slice(&payload);
                    m
                };
                match self.kind.take() {
                    Some(Kind::Binary) => Some(Incoming::Binary(whole.len())),
                    _ => Some(match String::from_utf8(whole) {
                        Ok(text) => Incoming::Text(Utf8Bytes::from(text)),
                        Err(_) => Incoming::Close {
                            code: CLOSE_INVALID_DATA,
                            reason: "invalid UTF-8",
                        },
                    }),
                }
            }
        };
        (used, item)
    }

    fn finish_too_large(&mut self) -> Option<Incoming> {
        match self.kind.take() {
            Some(Kind::TooLarge(n)) => Some(Incoming::TooLarge(n)),
            _ => None,
        }
    }
}

/// A frame that breaks the protocol: logged, and answered with a close frame.
fn broken(why: &str) -> Incoming {
    debug!(why, "the client broke the WebSocket protocol");
    Incoming::Close {
        code: CLOSE_PROTOCOL,
        reason: "protocol error",
    }
}

/// The close frame that answers a client's: its code echoed (section 5.5.1), or "normal" when
/// it gave none.
fn close_answer(payload: &[u8]) -> Incoming {
    let code = match payload {
        [] => CLOSE_NORMAL,
        [hi, lo, ..] => match u16::from_be_bytes([*hi, *lo]) {
            // Codes a close frame may carry (section 7.4, and IANA's registry since).
            c @ (1000..=1003 | 1007..=1014 | 3000..=4999) => c,
            _ => return broken("a close code that may not be sent"),
        },
        [_] => return broken("a close frame of one byte"),
    };
    if std::str::from_utf8(payload.get(2..).unwrap_or_default()).is_err() {
        return broken("a close reason that is not UTF-8");
    }
    Incoming::Close { code, reason: "" }
}

/// Unmasks a client's payload (section 5.3), four bytes at a time. Written here: tungstenite's
/// own is private.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let mut words = payload.chunks_exact_mut(4);
    for word in &mut words {
        for (b, m) in word.iter_mut().zip(mask) {
            *b ^= m;
        }
    }
    for (b, m) in words.into_remainder().iter_mut().zip(mask) {
        *b ^= m;
    }
}

#[cfg(test)]
mod tests {
    use hearth_proto::with_seq;
    use std::future::poll_fn;

    use super::*;

    /// A client's frame: masked, as a client must send it.
    fn frame(opcode: OpCode, is_final: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let header = FrameHeader {
            is_final,
            opcode,
            mask: Some(mask),
            ..FrameHeader::default()
        };
        let mut out = Vec::new();
        header.format(payload.len() as u64, &mut out).unwrap();
        let mut body = payload.to_vec();
        unmask(&mut body, mask);
        out.extend_from_slice(&body);
        out
    }

    fn text(s: &str) -> Vec<u8> {
        frame(OpCode::Data(Data::Text), true, s.as_bytes())
    }

    /// Feeds `input` in pieces of `piece` bytes, as reads would deliver it, and collects the
    /// messages.
    fn read_all(reader: &mut Reader, input: &[u8], piece: usize) -> Vec<Incoming> {
        let mut pending = Vec::new();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            pending.extend_from_slice(chunk);
            loop {
                let (used, item) = reader.step(&pending);
                pending.drain(..used);
                out.extend(item);
                if used == 0 || pending.is_empty() {
                    break;
                }
            }
        }
        assert!(pending.is_empty(), "bytes left over: {}", pending.len());
        out
    }

    #[test]
    fn frames_become_messages_however_the_reads_cut_them() {
        let mut input = text("hello, 세계");
        input.extend(frame(OpCode::Data(Data::Text), false, "one ".as_bytes()));
        // A ping between the parts of a message is answered on its own.
        input.extend(frame(OpCode::Control(Control::Ping), true, b"p"));
        input.extend(frame(
            OpCode::Data(Data::Continue),
            false,
            "two ".as_bytes(),
        ));
        input.extend(frame(
            OpCode::Data(Data::Continue),
            true,
            "three".as_bytes(),
        ));
        input.extend(frame(OpCode::Data(Data::Binary), true, &[1, 2, 3]));
        input.extend(frame(
            OpCode::Control(Control::Pong),
            true,
            &7u64.to_be_bytes(),
        ));
        let long = "x".repeat(70_000);
        input.extend(text(&long));
        let expected = vec![
            Incoming::Text(Utf8Bytes::from("hello, 세계")),
            Incoming::Ping(Bytes::from_static(b"p")),
            Incoming::Text(Utf8Bytes::from("one two three")),
            Incoming::Binary(3),
            Incoming::Pong(Bytes::copy_from_slice(&7u64.to_be_bytes())),
            Incoming::Text(Utf8Bytes::from(long)),
        ];
        for piece in [1, 2, 3, 7, 100, 4096, input.len()] {
            let mut reader = Reader::new(100_000);
            assert_eq!(read_all(&mut reader, &input, piece), expected, "{piece}");
            assert!(reader.message.is_empty() && reader.kind.is_none());
        }
    }

    #[test]
    fn a_message_over_the_limit_is_skipped_and_reported_and_the_next_one_read() {
        let mut input = text(&"x".repeat(5_000));
        // In several frames: the total counts.
        input.extend(frame(OpCode::Data(Data::Text), false, &[b'a'; 600]));
        input.extend(frame(OpCode::Control(Control::Ping), true, b""));
        input.extend(frame(OpCode::Data(Data::Continue), false, &[b'b'; 600]));
        input.extend(frame(OpCode::Data(Data::Continue), true, &[b'c'; 600]));
        // Empty final frame after an oversized start.
        input.extend(frame(OpCode::Data(Data::Binary), false, &[0; 1_500]));
        input.extend(frame(OpCode::Data(Data::Continue), true, &[]));
        input.extend(text("after"));
        for piece in [1, 5, 512, input.len()] {
            let mut reader = Reader::new(1_000);
            assert_eq!(
                read_all(&mut reader, &input, piece),
                vec![
                    Incoming::TooLarge(5_000),
                    Incoming::Ping(Bytes::new()),
                    Incoming::TooLarge(1_800),
                    Incoming::TooLarge(1_500),
                    Incoming::Text(Utf8Bytes::from("after")),
                ],
                "{piece}"
            );
            assert!(reader.message.capacity() == 0);
        }
    }

    #[test]
    fn frames_that_break_the_protocol_end_the_connection_with_a_reason() {
        let protocol = || Incoming::Close {
            code: CLOSE_PROTOCOL,
            reason: "protocol error",
        };
        let first = |input: Vec<u8>| Reader::new(1_000).step(&input).1;
        // Not masked.
        let mut unmasked = Vec::new();
        FrameHeader {
            opcode: OpCode::Data(Data::Text),
            ..FrameHeader::default()
        }
        .format(2, &mut unmasked)
        .unwrap();
        unmasked.extend_from_slice(b"hi");
        assert_eq!(first(unmasked), Some(protocol()));
        let mut rsv = text("hi");
        rsv[0] |= 0x40;
        assert_eq!(first(rsv), Some(protocol()));
        // A reserved opcode.
        let mut reserved = text("hi");
        reserved[0] = (reserved[0] & 0xf0) | 0x3;
        assert_eq!(first(reserved), Some(protocol()));
        assert_eq!(
            first(frame(OpCode::Data(Data::Continue), true, b"x")),
            Some(protocol())
        );
        assert_eq!(
            first(frame(OpCode::Control(Control::Ping), false, b"x")),
            Some(protocol())
        );
        assert_eq!(
            first(frame(OpCode::Control(Control::Ping), true, &[0; 126])),
            Some(protocol())
        );
        let mut two = frame(OpCode::Data(Data::Text), false, b"a");
        two.extend(text("b"));
        let mut reader = Reader::new(1_000);
        assert_eq!(read_all_until_close(&mut reader, &two), protocol());
        assert_eq!(
            first(text_bytes(&[0xff, 0xfe])),
            Some(Incoming::Close {
                code: CLOSE_INVALID_DATA,
                reason: "invalid UTF-8"
            })
        );
        // Close frames: the code echoed, none given is normal, a code never sent is an error.
        let close = |payload: &[u8]| first(frame(OpCode::Control(Control::Close), true, payload));
        assert_eq!(
            close(&[]),
            Some(Incoming::Close {
                code: CLOSE_NORMAL,
                reason: ""
            })
        );
        assert_eq!(
            close(&[0x03, 0xe9, b'b', b'y', b'e']),
            Some(Incoming::Close {
                code: 1001,
                reason: ""
            })
        );
        assert_eq!(
            close(&1012u16.to_be_bytes()),
            Some(Incoming::Close {
                code: 1012,
                reason: ""
            })
        );
        assert_eq!(close(&1005u16.to_be_bytes()), Some(protocol()));
        assert_eq!(close(&1015u16.to_be_bytes()), Some(protocol()));
        assert_eq!(close(&[0x03]), Some(protocol()));
    }

    fn text_bytes(payload: &[u8]) -> Vec<u8> {
        frame(OpCode::Data(Data::Text), true, payload)
    }

    fn read_all_until_close(reader: &mut Reader, input: &[u8]) -> Incoming {
        let mut at = 0;
        loop {
            let (used, item) = reader.step(&input[at..]);
            at += used;
            if let Some(item @ Incoming::Close { .. }) = item {
                return item;
            }
            assert!(used > 0, "stuck");
        }
    }

    #[tokio::test]
    async fn a_socket_reads_many_frames_sent_at_once_and_keeps_no_buffer_afterwards() {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        let mut receiving = Receiving::new(&[], 100_000);
        let mut sending = Sending::default();
        let mut input = Vec::new();
        for n in 0..2_000u32 {
            input.extend(frame(
                OpCode::Control(Control::Ping),
                true,
                &n.to_be_bytes(),
            ));
        }
        let long = "y".repeat(20_000);
        input.extend(text(&long));
        input.extend(text("last"));
        tokio::io::AsyncWriteExt::write_all(&mut client, &input)
            .await
            .unwrap();
        for n in 0..2_000u32 {
            let got = poll_fn(|cx| receiving.poll_next(&mut server, cx)).await;
            assert_eq!(
                got,
                Some(Incoming::Ping(Bytes::copy_from_slice(&n.to_be_bytes())))
            );
        }
        let got = poll_fn(|cx| receiving.poll_next(&mut server, cx)).await;
        assert_eq!(got, Some(Incoming::Text(Utf8Bytes::from(long))));
        let got = poll_fn(|cx| receiving.poll_next(&mut server, cx)).await;
        assert_eq!(got, Some(Incoming::Text(Utf8Bytes::from("last"))));
        assert_eq!((receiving.pending.capacity(), receiving.taken), (0, 0));

        // Writing: the header, then the payload, unmasked.
        sending
            .start(Outgoing::Text {
                text: Utf8Bytes::from("héllo"),
                seq: None,
            })
            .unwrap();
        poll_fn(|cx| sending.poll_flush(&mut server, cx))
            .await
            .unwrap();
        assert!(!sending.is_writing());
        let mut out = [0u8; 8];
        tokio::io::AsyncReadExt::read_exact(&mut client, &mut out)
            .await
            .unwrap();
        assert_eq!(out, [0x81, 6, b'h', 0xc3, 0xa9, b'l', b'l', b'o']);
        drop(client);
        assert_eq!(
            poll_fn(|cx| receiving.poll_next(&mut server, cx)).await,
            None
        );
    }

    #[tokio::test]
    async fn a_seq_is_written_in_front_of_the_fields_however_much_of_a_frame_the_socket_takes() {
        // Seven bytes at a time: every frame is written in many pieces, its head too.
        let (mut client, mut server) = tokio::io::duplex(7);
        let large = format!(r#"{{"type":"signal","data":"{}"}}"#, "x".repeat(5_000));
        let messages = [
            (r#"{"type":"a"}"#.to_owned(), Some(7)),
            ("{}".to_owned(), Some(u64::MAX)),
            (large.clone(), Some(12)),
            (large, None),
        ];
        let want: Vec<String> = messages
            .iter()
            .map(|(text, seq)| seq.map_or_else(|| text.clone(), |seq| with_seq(text, seq)))
            .collect();
        let write = async move {
            let mut sending = Sending::default();
            for (text, seq) in messages {
                let text = Utf8Bytes::from(text);
                sending.start(Outgoing::Text { text, seq }).unwrap();
                poll_fn(|cx| sending.poll_flush(&mut server, cx))
                    .await
                    .unwrap();
            }
        };
        let read = async {
            let mut all = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut client, &mut all)
                .await
                .unwrap();
            all
        };
        let ((), bytes) = tokio::join!(write, read);
        let mut frames = Cursor::new(&bytes[..]);
        let mut got = Vec::new();
        while (frames.position() as usize) < bytes.len() {
            let (header, len) = FrameHeader::parse(&mut frames).unwrap().unwrap();
            assert_eq!(header.opcode, OpCode::Data(Data::Text));
            assert!(header.is_final && header.mask.is_none());
            let at = frames.position() as usize;
            let end = at + usize::try_from(len).unwrap();
            got.push(String::from_utf8(bytes[at..end].to_vec()).unwrap());
            frames.set_position(end as u64);
        }
        assert_eq!(got, want);
    }

    #[test]
    fn unmasking_matches_the_definition() {
        let mask = [1, 2, 3, 4];
        let mut data: Vec<u8> = (0..=255).collect();
        unmask(&mut data, mask);
        for (i, b) in data.iter().enumerate() {
            assert_eq!(*b, (i as u8) ^ mask[i % 4]);
        }
    }
}
