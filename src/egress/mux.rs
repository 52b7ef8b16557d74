//! Pure: the framing that carries many TCP connections over the one byte stream between the
//! forwarder in the sandbox and Backspace (an exec's stdin and stdout).
//!
//! A frame is `kind: u8`, `connection: u32`, `length: u32` (big-endian) and `length` bytes.
//! The forwarder opens a connection (`Open`), both sides send `Data`, `End` says the sender
//! sends no more on that connection (a half close), and `Reset` drops it at once. The forwarder
//! (`FORWARDER`, Python, which every sandbox image has) speaks the same framing.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The largest payload of one frame.
pub const MAX_PAYLOAD: usize = 64 * 1024;
const HEADER: usize = 9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Open = 1,
    Data = 2,
    End = 3,
    Reset = 4,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub conn: u32,
    pub payload: Bytes,
}

impl Frame {
    pub fn new(kind: Kind, conn: u32) -> Frame {
        Frame {
            kind,
            conn,
            payload: Bytes::new(),
        }
    }

    pub fn data(conn: u32, payload: Bytes) -> Frame {
        Frame {
            kind: Kind::Data,
            conn,
            payload,
        }
    }

    /// The frame on the wire. A payload over [`MAX_PAYLOAD`] is the caller's bug: split first.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER + self.payload.len());
        out.put_u8(self.kind as u8);
        out.put_u32(self.conn);
        out.put_u32(self.payload.len() as u32);
        out.put_slice(&self.payload);
        out.freeze()
    }
}

/// The stream broke the framing: the link is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MuxError {
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("a frame of {0} bytes is over the limit")]
    TooLong(usize),
}

/// Frames from a byte stream that arrives in pieces of any size.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `None` until one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, MuxError> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let kind = match self.buf[0] {
            1 => Kind::Open,
            2 => Kind::Data,
            3 => Kind::End,
            4 => Kind::Reset,
            other => return Err(MuxError::Kind(other)),
        };
        let conn = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        let len = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(MuxError::TooLong(len));
        }
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        self.buf.advance(HEADER);
        let payload = self.buf.split_to(len).freeze();
        Ok(Some(Frame {
            kind,
            conn,
            payload,
        }))
    }
}

/// The forwarder that runs in the sandbox (as `python3 -c`, with the port as its argument): it
/// listens on the sandbox's own loopback and carries each connection over stdin and stdout in
/// the frames above. It needs nothing but Python's standard library.
pub const FORWARDER: &str = r#"
import os, socket, struct, sys, threading
port = int(sys.argv[1])
out = sys.stdout.buffer
lock = threading.Lock()
conns = {}
def send(kind, cid, data=b""):
    with lock:
        out.write(struct.pack(">BII", kind, cid, len(data)) + data)
        out.flush()
def pump(cid, s):
    try:
        while True:
            data = s.recv(65536)
            if not data:
                send(3, cid)
                return
            send(2, cid, data)
    except OSError:
        conns.pop(cid, None)
        send(4, cid)
def accept(srv):
    cid = 0
    while True:
        s, _ = srv.accept()
        cid += 1
        conns[cid] = s
        send(1, cid)
        threading.Thread(target=pump, args=(cid, s), daemon=True).start()
def read(n):
    buf = b""
    while len(buf) < n:
        chunk = sys.stdin.buffer.read(n - len(buf))
        if not chunk:
            os._exit(0)
        buf += chunk
    return buf
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
threading.Thread(target=accept, args=(srv,), daemon=True).start()
send(1, 0)
while True:
    kind, cid, n = struct.unpack(">BII", read(9))
    data = read(n) if n else b""
    s = conns.get(cid)
    if s is None:
        continue
    try:
        if kind == 2:
            s.sendall(data)
        elif kind == 3:
            s.shutdown(socket.SHUT_WR)
        elif kind == 4:
            conns.pop(cid, None)
            s.shutdown(socket.SHUT_RDWR)
            s.close()
    except OSError:
        conns.pop(cid, None)
        s.close()
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_back_whole_from_any_split_of_the_stream() {
        let frames = vec![
            Frame::new(Kind::Open, 7),
            Frame::data(
                7,
                Bytes::from_static(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n"),
            ),
            Frame::new(Kind::End, 7),
            Frame::new(Kind::Reset, u32::MAX),
        ];
        let wire: Vec<u8> = frames.iter().flat_map(|f| f.encode().to_vec()).collect();
        for piece in [1, 2, 9, 10, 1000] {
            let mut decoder = Decoder::default();
            let mut got = vec![];
            for chunk in wire.chunks(piece) {
                decoder.push(chunk);
                while let Some(f) = decoder.next_frame().expect("valid") {
                    got.push(f);
                }
            }
            assert_eq!(got, frames, "pieces of {piece}");
        }
    }

    #[test]
    fn a_broken_stream_is_an_error_not_a_guess() {
        let mut d = Decoder::default();
        d.push(&[9, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(MuxError::Kind(9)));
        let mut d = Decoder::default();
        d.push(&[2, 0, 0, 0, 1, 0x7f, 0, 0, 0]);
        assert!(matches!(d.next_frame(), Err(MuxError::TooLong(_))));
    }
}
