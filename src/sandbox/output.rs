//! Capped capture of a command's output: the head and the tail are kept, the middle is cut and
//! replaced by a marker that says how many bytes were cut. Memory stays bounded by the cap.

use std::collections::VecDeque;

/// Bytes always kept at the very end, beyond the cap, so a trailer written by the exec wrapper
/// survives any amount of output and can be taken off before capping.
const TRAILER_RESERVE: usize = 512;

/// Collects one stream (stdout or stderr) up to `cap` bytes.
#[derive(Debug)]
pub struct CappedOutput {
    cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

/// The collected text and how many bytes were cut from it.
#[derive(Debug, PartialEq, Eq)]
pub struct Captured {
    pub text: String,
    pub cut: u64,
}

impl CappedOutput {
    pub fn new(cap: usize) -> Self {
        CappedOutput {
            cap,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
        }
    }

    fn head_cap(&self) -> usize {
        self.cap / 2
    }

    fn tail_keep(&self) -> usize {
        self.cap - self.head_cap() + TRAILER_RESERVE
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = self.head_cap().saturating_sub(self.head.len());
        if room > 0 && self.tail.is_empty() {
            let take = room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        let keep = self.tail_keep();
        if bytes.len() >= keep {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - keep..]);
        } else {
            self.tail.extend(bytes);
            while self.tail.len() > keep {
                self.tail.pop_front();
            }
        }
    }

    /// Takes off the last line that starts with `marker` (written last by the exec wrapper)
    /// and returns it, without the marker.
    pub fn take_trailer(&mut self, marker: &str) -> Option<String> {
        let needle = format!("\n{marker}");
        let whole = self.head.len() as u64 + self.tail.len() as u64 == self.total;
        // When nothing was dropped the trailer may straddle head and tail: search both.
        let mut bytes: Vec<u8> = if whole { self.head.clone() } else { Vec::new() };
        let offset = bytes.len();
        bytes.extend(self.tail.iter().copied());
        let at = find_last(&bytes, needle.as_bytes())?;
        let trailer = String::from_utf8_lossy(&bytes[at + needle.len()..])
            .trim()
            .to_string();
        self.total -= (bytes.len() - at) as u64;
        bytes.truncate(at);
        if whole {
            let head_len = bytes.len().min(self.head_cap());
            self.tail = bytes.split_off(head_len).into();
            self.head = bytes;
        } else {
            self.tail = bytes.split_off(offset).into();
        }
        Some(trailer)
    }

    /// Bytes seen so far, cut or not.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The raw bytes kept (all of them when nothing was cut), for binary content.
    pub fn into_bytes(self) -> Vec<u8> {
        let mut all = self.head;
        all.extend(self.tail);
        all
    }

    /// The text: everything if it fits in the cap, else head, marker, tail.
    pub fn finish(self) -> Captured {
        let kept_tail: Vec<u8> = self.tail.into_iter().collect();
        let kept = self.head.len() as u64 + kept_tail.len() as u64;
        if self.total <= self.cap as u64 && kept == self.total {
            let mut all = self.head;
            all.extend_from_slice(&kept_tail);
            return Captured {
                text: String::from_utf8_lossy(&all).into_owned(),
                cut: 0,
            };
        }
        let tail_len = (self.cap - self.head.len()).min(kept_tail.len());
        let tail = &kept_tail[kept_tail.len() - tail_len..];
        let cut = self.total - self.head.len() as u64 - tail.len() as u64;
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        text.push_str(&format!("\n[... {cut} bytes cut ...]\n"));
        text.push_str(&String::from_utf8_lossy(tail));
        Captured { text, cut }
    }
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() > haystack.len() {
        return None;
    }
    (0..=haystack.len() - needle.len())
        .rev()
        .find(|&i| &haystack[i..i + needle.len()] == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(cap: usize, chunks: &[&[u8]]) -> Captured {
        let mut out = CappedOutput::new(cap);
        for chunk in chunks {
            out.push(chunk);
        }
        out.finish()
    }

    #[test]
    fn short_output_is_kept_whole() {
        let got = collect(100, &[b"hello ", b"world"]);
        assert_eq!(
            got,
            Captured {
                text: "hello world".into(),
                cut: 0
            }
        );
    }

    #[test]
    fn output_exactly_at_the_cap_is_not_cut() {
        let data = vec![b'x'; 100];
        let got = collect(100, &[&data]);
        assert_eq!(got.cut, 0);
        assert_eq!(got.text.len(), 100);
    }

    #[test]
    fn long_output_is_cut_in_the_middle_with_a_marker_counting_the_cut_bytes() {
        let mut data = Vec::new();
        data.extend(vec![b'a'; 500]);
        data.extend(vec![b'm'; 10_000]);
        data.extend(vec![b'z'; 500]);
        let got = collect(1000, &[&data]);
        assert_eq!(got.cut, 10_000);
        assert!(got.text.starts_with(&"a".repeat(500)));
        assert!(got.text.ends_with(&"z".repeat(500)));
        assert!(got.text.contains("[... 10000 bytes cut ...]"));
        assert!(!got.text.contains('m'));
    }

    #[test]
    fn cut_counts_match_for_many_small_chunks() {
        let mut out = CappedOutput::new(64);
        for i in 0..10_000u32 {
            out.push(format!("{i}\n").as_bytes());
        }
        let total: usize = (0..10_000u32).map(|i| format!("{i}\n").len()).sum();
        let got = out.finish();
        assert_eq!(got.cut, total as u64 - 64);
        assert!(got.text.starts_with("0\n1\n2\n"));
        assert!(got.text.ends_with("9999\n"));
    }

    #[test]
    fn trailer_is_taken_off_before_capping() {
        let mut out = CappedOutput::new(10);
        out.push(&vec![b'e'; 5000]);
        out.push(b"\nNONCE 0 1 2\n");
        assert_eq!(out.take_trailer("NONCE ").as_deref(), Some("0 1 2"));
        let got = out.finish();
        assert_eq!(got.cut, 4990);
        assert!(!got.text.contains("NONCE"));
    }

    #[test]
    fn trailer_after_short_output_leaves_the_output_alone() {
        let mut out = CappedOutput::new(100);
        out.push(b"oops");
        out.push(b"\nNONCE 1 0 0\n");
        assert_eq!(out.take_trailer("NONCE ").as_deref(), Some("1 0 0"));
        assert_eq!(
            out.finish(),
            Captured {
                text: "oops".into(),
                cut: 0
            }
        );
    }

    #[test]
    fn zero_cap_keeps_nothing_but_the_marker() {
        let got = collect(0, &[b"abc"]);
        assert_eq!(got.cut, 3);
        assert_eq!(got.text, "\n[... 3 bytes cut ...]\n");
    }
}
