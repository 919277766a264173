//! The driver protocol of lance-offsets (docs/drivers.md), for Rust stores, with the standard
//! library only: a JSON reader big enough for the requests, the answers, and the loop that
//! serves one handle from `open` to `close`.
//!
//! A store plugs in by implementing [`Driver`]; `serve` does the rest. Numbers travel as decimal
//! strings (`"18446744073709551615"`), parsed here into the Rust types the store takes: a value
//! that does not fit is the store's `invalid_argument`, as the type system would refuse it.

#![allow(dead_code)] // each driver uses the part it needs

use std::io::{self, BufRead, Write};

/// One failed request, as the protocol reports it: a kind of the contract, and words.
pub struct Failure {
    pub kind: &'static str,
    pub message: String,
    pub path: Option<String>,
    pub errno: Option<&'static str>,
}

impl Failure {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Failure {
        Failure { kind, message: message.into(), path: None, errno: None }
    }

    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure::new("invalid_argument", message)
    }

    pub fn at(mut self, path: impl Into<String>) -> Failure {
        self.path = Some(path.into());
        self
    }

    /// An I/O error: kind `io`, with the errno's name when the OS gave one.
    pub fn io(error: &io::Error) -> Failure {
        let mut failure = Failure::new("io", error.to_string());
        failure.errno = error.raw_os_error().and_then(errno_name);
        failure
    }
}

fn errno_name(code: i32) -> Option<&'static str> {
    Some(match code {
        1 => "EPERM",
        2 => "ENOENT",
        4 => "EINTR",
        5 => "EIO",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        17 => "EEXIST",
        18 => "EXDEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        23 => "ENFILE",
        24 => "EMFILE",
        27 => "EFBIG",
        28 => "ENOSPC",
        30 => "EROFS",
        122 => "EDQUOT",
        _ => return None,
    })
}

/// What a store implements to be driven; one value serves one handle.
pub trait Driver {
    /// Open the store in `path` (with the consumer name the suite gives, if the store declared
    /// `named`); return the capabilities to declare, as a JSON object's text.
    fn open(&mut self, path: &str, name: Option<&str>) -> Result<String, Failure>;
    fn load(&mut self, topic_id: u32, consumer_id: u64) -> Result<Option<u64>, Failure>;
    fn save(&mut self, topic_id: u32, consumer_id: u64, offset: u64) -> Result<(), Failure>;
    fn delete(&mut self, topic_id: u32, consumer_id: u64) -> Result<(), Failure>;
    fn list_all(&mut self) -> Result<Vec<(u32, u64, u64)>, Failure>;
    /// Only for a store that declared `"save_many": true`.
    fn save_many(&mut self, batch: &[(u32, u64, u64)]) -> Result<(), Failure> {
        let _ = batch;
        Err(Failure::invalid("this store offers no save_many"))
    }
    fn close(&mut self) -> Result<(), Failure>;
}

// -- JSON, as much as the protocol needs -------------------------------------------------------

#[derive(Debug)]
pub enum Json {
    Null,
    Bool(bool),
    Number(String),
    Text(String),
    List(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn text(&self) -> Option<&str> {
        match self {
            Json::Text(text) => Some(text),
            _ => None,
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn space(&mut self) {
        while self.at < self.bytes.len() && matches!(self.bytes[self.at], b' ' | b'\t' | b'\r' | b'\n') {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.space();
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", byte as char, self.at))
        }
    }

    fn word(&mut self, word: &str, value: Json) -> Result<Json, String> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(format!("unexpected input at byte {}", self.at))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        match self.peek() {
            Some(b'n') => self.word("null", Json::Null),
            Some(b't') => self.word("true", Json::Bool(true)),
            Some(b'f') => self.word("false", Json::Bool(false)),
            Some(b'"') => Ok(Json::Text(self.string()?)),
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Ok(Json::List(items));
                }
                loop {
                    items.push(self.value()?);
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Json::List(items));
                        }
                        _ => return Err(format!("expected ',' or ']' at byte {}", self.at)),
                    }
                }
            }
            Some(b'{') => {
                self.at += 1;
                let mut fields = Vec::new();
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return Ok(Json::Object(fields));
                }
                loop {
                    self.space();
                    let key = self.string()?;
                    self.expect(b':')?;
                    fields.push((key, self.value()?));
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Json::Object(fields));
                        }
                        _ => return Err(format!("expected ',' or '}}' at byte {}", self.at)),
                    }
                }
            }
            Some(b'-') | Some(b'0'..=b'9') => {
                let start = self.at;
                while self.at < self.bytes.len()
                    && matches!(self.bytes[self.at], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    self.at += 1;
                }
                Ok(Json::Number(String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned()))
            }
            _ => Err(format!("unexpected input at byte {}", self.at)),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        while self.at < self.bytes.len() {
            let byte = self.bytes[self.at];
            self.at += 1;
            match byte {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let escaped = *self.bytes.get(self.at).ok_or("unfinished escape")?;
                    self.at += 1;
                    let plain = match escaped {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let code = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&code) {
                                // A surrogate pair: the low half follows as \uXXXX.
                                if self.bytes[self.at..].starts_with(b"\\u") {
                                    self.at += 2;
                                    let low = self.hex4()?;
                                    0x10000 + ((code - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF)
                                } else {
                                    0xFFFD
                                }
                            } else {
                                code
                            };
                            char::from_u32(code).unwrap_or('\u{FFFD}')
                        }
                        _ => return Err(format!("bad escape at byte {}", self.at)),
                    };
                    let mut buffer = [0u8; 4];
                    out.extend_from_slice(plain.encode_utf8(&mut buffer).as_bytes());
                }
                _ => out.push(byte),
            }
        }
        Err("unfinished string".to_string())
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.bytes.get(self.at..self.at + 4).ok_or("short \\u escape")?;
        self.at += 4;
        let text = std::str::from_utf8(digits).map_err(|e| e.to_string())?;
        u32::from_str_radix(text, 16).map_err(|e| e.to_string())
    }
}

pub fn parse(line: &str) -> Result<Json, String> {
    let mut reader = Reader { bytes: line.as_bytes(), at: 0 };
    let value = reader.value()?;
    reader.space();
    if reader.at != reader.bytes.len() {
        return Err(format!("trailing input at byte {}", reader.at));
    }
    Ok(value)
}

/// `text` as a JSON string, quotes included.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// -- numbers as the protocol carries them ------------------------------------------------------

fn digits<'a>(request: &'a Json, name: &str) -> Result<&'a str, Failure> {
    let text = request
        .get(name)
        .and_then(Json::text)
        .ok_or_else(|| Failure::invalid(format!("{} must be a decimal string", name)))?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Failure::invalid(format!("{} must be a non-negative integer, got {:?}", name, text)));
    }
    Ok(text)
}

fn number_u32(request: &Json, name: &str) -> Result<u32, Failure> {
    let text = digits(request, name)?;
    text.parse::<u32>()
        .map_err(|_| Failure::invalid(format!("{} must be in 0..{}, got {}", name, u32::MAX, text)))
}

fn number_u64(request: &Json, name: &str) -> Result<u64, Failure> {
    let text = digits(request, name)?;
    text.parse::<u64>()
        .map_err(|_| Failure::invalid(format!("{} must be in 0..{}, got {}", name, u64::MAX, text)))
}

fn key(request: &Json) -> Result<(u32, u64), Failure> {
    Ok((number_u32(request, "topic_id")?, number_u64(request, "consumer_id")?))
}

fn batch(request: &Json) -> Result<Vec<(u32, u64, u64)>, Failure> {
    let entries = match request.get("offsets") {
        Some(Json::List(entries)) => entries,
        _ => return Err(Failure::invalid("offsets must be a list of [topic_id, consumer_id, offset]")),
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        match entry {
            Json::List(parts) if parts.len() == 3 => {
                let named = Json::Object(vec![
                    ("topic_id".to_string(), clone_text(&parts[0])),
                    ("consumer_id".to_string(), clone_text(&parts[1])),
                    ("offset".to_string(), clone_text(&parts[2])),
                ]);
                let (topic, consumer) = key(&named)?;
                out.push((topic, consumer, number_u64(&named, "offset")?));
            }
            _ => return Err(Failure::invalid("each entry must be [topic_id, consumer_id, offset]")),
        }
    }
    Ok(out)
}

fn clone_text(value: &Json) -> Json {
    match value {
        Json::Text(text) => Json::Text(text.clone()),
        _ => Json::Null,
    }
}

// -- the loop ------------------------------------------------------------------------------------

fn answer(request: &Json, driver: &mut dyn Driver) -> (Result<String, Failure>, bool) {
    let op = request.get("op").and_then(Json::text).unwrap_or("");
    let result = match op {
        "open" => {
            let path = request.get("path").and_then(Json::text).unwrap_or("");
            let name = request.get("name").and_then(Json::text);
            driver
                .open(path, name)
                .map(|caps| format!("{{\"protocol\":1,\"capabilities\":{}}}", caps))
        }
        "load" => key(request).and_then(|(t, c)| driver.load(t, c)).map(|found| match found {
            Some(offset) => format!("\"{}\"", offset),
            None => "null".to_string(),
        }),
        "save" => key(request)
            .and_then(|(t, c)| Ok((t, c, number_u64(request, "offset")?)))
            .and_then(|(t, c, o)| driver.save(t, c, o))
            .map(|_| "null".to_string()),
        "delete" => key(request).and_then(|(t, c)| driver.delete(t, c)).map(|_| "null".to_string()),
        "list_all" => driver.list_all().map(|listed| {
            let items: Vec<String> =
                listed.iter().map(|(t, c, o)| format!("[\"{}\",\"{}\",\"{}\"]", t, c, o)).collect();
            format!("[{}]", items.join(","))
        }),
        "save_many" => batch(request).and_then(|b| driver.save_many(&b)).map(|_| "null".to_string()),
        "close" => return (driver.close().map(|_| "null".to_string()), true),
        other => Err(Failure::invalid(format!("unknown op {:?}", other))),
    };
    (result, false)
}

/// Serve requests from stdin until `close` (or the end of stdin); the process's exit status.
pub fn serve(driver: &mut dyn Driver) -> i32 {
    let stdin = io::stdin();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for line in stdin.lock().lines() {
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                eprintln!("driver: cannot read stdin: {}", error);
                return 2;
            }
        };
        let request = match parse(&line) {
            Ok(request) => request,
            Err(error) => {
                eprintln!("driver: a request that is not JSON ({}): {}", error, line);
                return 2;
            }
        };
        let id = match request.get("id") {
            Some(Json::Number(id)) => id.clone(),
            _ => {
                eprintln!("driver: a request without an id: {}", line);
                return 2;
            }
        };
        let (result, closing) = answer(&request, driver);
        let reply = match result {
            Ok(ok) => format!("{{\"id\":{},\"ok\":{}}}", id, ok),
            Err(failure) => {
                let mut error = format!("{{\"kind\":{},\"message\":{}", quote(failure.kind), quote(&failure.message));
                if let Some(path) = failure.path {
                    error.push_str(&format!(",\"path\":{}", quote(&path)));
                }
                if let Some(errno) = failure.errno {
                    error.push_str(&format!(",\"errno\":{}", quote(errno)));
                }
                format!("{{\"id\":{},\"error\":{}}}}}", id, error)
            }
        };
        if writeln!(out, "{}", reply).and_then(|_| out.flush()).is_err() {
            return 2;
        }
        if closing {
            return 0;
        }
    }
    0
}
