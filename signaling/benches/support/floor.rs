//! The floor: a relay that does as little as a WebSocket relay can, to measure what the kernel
//! alone costs per relayed message on this machine (the same reads and writes on the same
//! loopback sockets as any server), in the same run as the servers measured against it.
//!
//! Written by hand on purpose, and for this benchmark only: no crate is "the least a relay can
//! do" (tungstenite parses and formats its frame headers and derives its upgrade's key, as it
//! does for the server). One thread, one `epoll` (mio, edge-triggered); per message one `read` of whatever is
//! waiting and one `write` of the frame to the peer it names. It speaks just enough of the
//! PeerJS server's protocol for the load generator: the upgrade (`?id=` in its URL), `OPEN`,
//! and messages whose `"dst":"<id>"` names the connection they go to, forwarded as they came.
//! It checks nothing else: no tokens, no rooms, no JSON, no heartbeats, no limits.

use std::collections::HashMap;
use std::io::{Cursor, ErrorKind, IoSlice, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};

const LISTENER: Token = Token(usize::MAX);

struct Conn {
    io: TcpStream,
    /// What was read and not yet handled (the upgrade request, or part of a frame).
    inbuf: Vec<u8>,
    /// What the socket did not take yet.
    outbuf: Vec<u8>,
    /// Its PeerJS id, once upgraded.
    id: Option<String>,
}

/// Serves on `addr` until the process is killed.
pub fn serve(addr: SocketAddr) -> ! {
    let mut poll = Poll::new().expect("epoll");
    let mut listener = TcpListener::bind(addr).expect("the floor's port");
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .expect("register the listener");
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            assert_eq!(e.kind(), ErrorKind::Interrupted, "epoll_wait: {e}");
            continue;
        }
        for event in &events {
            if event.token() == LISTENER {
                while let Ok((mut io, _)) = listener.accept() {
                    let _ = io.set_nodelay(true);
                    let slot = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    poll.registry()
                        .register(
                            &mut io,
                            Token(slot),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .expect("register a connection");
                    conns[slot] = Some(Conn {
                        io,
                        inbuf: Vec::new(),
                        outbuf: Vec::new(),
                        id: None,
                    });
                }
                continue;
            }
            let slot = event.token().0;
            if event.is_writable() && !flush(&mut conns, slot) {
                close(&mut conns, &mut free, &mut by_id, slot, &poll);
                continue;
            }
            if event.is_readable() && !readable(&mut conns, &mut by_id, slot, &mut chunk) {
                close(&mut conns, &mut free, &mut by_id, slot, &poll);
            }
        }
    }
}

fn close(
    conns: &mut [Option<Conn>],
    free: &mut Vec<usize>,
    by_id: &mut HashMap<String, usize>,
    slot: usize,
    poll: &Poll,
) {
    if let Some(mut c) = conns[slot].take() {
        let _ = poll.registry().deregister(&mut c.io);
        if let Some(id) = c.id
            && by_id.get(&id) == Some(&slot)
        {
            by_id.remove(&id);
        }
        free.push(slot);
    }
}

/// Writes what the socket did not take before; false when the connection failed.
fn flush(conns: &mut [Option<Conn>], slot: usize) -> bool {
    let Some(c) = conns[slot].as_mut() else {
        return true;
    };
    while !c.outbuf.is_empty() {
        match c.io.write(&c.outbuf) {
            Ok(n) => {
                c.outbuf.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// Reads everything waiting and handles it; false when the connection is over.
fn readable(
    conns: &mut [Option<Conn>],
    by_id: &mut HashMap<String, usize>,
    slot: usize,
    chunk: &mut [u8],
) -> bool {
    loop {
        let Some(c) = conns[slot].as_mut() else {
            return true;
        };
        match c.io.read(chunk) {
            Ok(0) => return false,
            Ok(n) => {
                c.inbuf.extend_from_slice(&chunk[..n]);
                if !handle(conns, by_id, slot) {
                    return false;
                }
                if n < chunk.len() {
                    // A short read took all there was: the next would say so (edge-triggered
                    // epoll tells again when more comes).
                    return true;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Handles what is in the connection's buffer; false when it is over.
fn handle(conns: &mut [Option<Conn>], by_id: &mut HashMap<String, usize>, slot: usize) -> bool {
    let Some(c) = conns[slot].as_mut() else {
        return true;
    };
    if c.id.is_none() {
        let Some(end) = find(&c.inbuf, b"\r\n\r\n") else {
            return true;
        };
        let request = String::from_utf8_lossy(&c.inbuf[..end]).into_owned();
        c.inbuf.drain(..end + 4);
        let id = request
            .split(['?', '&', ' '])
            .find_map(|p| p.strip_prefix("id="))
            .unwrap_or_default()
            .to_owned();
        let Some(key) = request.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        }) else {
            return false;
        };
        let accept = derive_accept_key(key.as_bytes());
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        c.outbuf.extend_from_slice(response.as_bytes());
        send(c, br#"{"type":"OPEN"}"#);
        by_id.insert(id.clone(), slot);
        c.id = Some(id);
        if !flush(conns, slot) {
            return false;
        }
    }
    loop {
        let Some(c) = conns[slot].as_mut() else {
            return true;
        };
        let mut cursor = Cursor::new(&c.inbuf[..]);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return true,
            Err(_) => return false,
        };
        let payload_at = usize::try_from(cursor.position()).expect("a header's length");
        let Some(end) = usize::try_from(len)
            .ok()
            .map(|len| payload_at + len)
            .filter(|&end| end <= c.inbuf.len())
        else {
            return true;
        };
        if let Some(mask) = header.mask {
            for (i, b) in c.inbuf[payload_at..end].iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        match header.opcode {
            OpCode::Control(Control::Close) => return false,
            OpCode::Data(Data::Text) => {
                let to = dst(&c.inbuf[payload_at..end])
                    .and_then(|d| by_id.get(d))
                    .copied()
                    .filter(|&to| to != slot);
                if let Some(to) = to {
                    // Both connections borrowed at once: the sender's buffer and the peer.
                    let (from, peer) = if slot < to {
                        let (a, b) = conns.split_at_mut(to);
                        (&mut a[slot], &mut b[0])
                    } else {
                        let (a, b) = conns.split_at_mut(slot);
                        (&mut b[0], &mut a[to])
                    };
                    if let (Some(from), Some(peer)) = (from.as_mut(), peer.as_mut()) {
                        send(peer, &from.inbuf[payload_at..end]);
                    }
                }
                if let Some(c) = conns[slot].as_mut() {
                    c.inbuf.drain(..end);
                }
            }
            _ => {
                c.inbuf.drain(..end);
            }
        }
    }
}

/// Writes one unmasked text frame, keeping what the socket does not take.
fn send(peer: &mut Conn, payload: &[u8]) {
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let mut head = Cursor::new([0u8; 14]);
    let len = payload.len() as u64;
    header
        .format(len, &mut head)
        .expect("a header fits 14 bytes");
    let head = &head.get_ref()[..header.len(len)];
    let written = if peer.outbuf.is_empty() {
        loop {
            match peer
                .io
                .write_vectored(&[IoSlice::new(head), IoSlice::new(payload)])
            {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break 0,
            }
        }
    } else {
        0
    };
    // What the socket did not take, behind what it had not taken before.
    if written < head.len() {
        peer.outbuf.extend_from_slice(&head[written..]);
        peer.outbuf.extend_from_slice(payload);
    } else {
        peer.outbuf
            .extend_from_slice(&payload[(written - head.len()).min(payload.len())..]);
    }
}

/// The id after `"dst":"`, up to the next quote.
fn dst(payload: &[u8]) -> Option<&str> {
    let key = br#""dst":""#;
    let at = find(payload, key)? + key.len();
    let len = payload[at..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&payload[at..at + len]).ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
