//! The echo path's query parameters, as Fortio spells them: parsing, and drawing the
//! per-request outcome.
//!
//! | parameter | value | effect |
//! |---|---|---|
//! | `delay` | a duration (`10ms`, `1.5s`) or a weighted list `10ms:50,200ms:5` | wait before answering; capped at [`Limits::max_delay`] |
//! | `status` | a code (`503`) or a weighted list `503:20,429:5` | answer with that status (default 200) |
//! | `size` | bytes (`1000`, `64KiB`) or a weighted list `1024:50,65536:5` | answer with that many bytes instead of the echo; over [`Limits::max_size`] is refused |
//! | `header` | `Name:Value`, repeatable | add that response header |
//! | `close` | `true`, `false`, or a percentage (`5`, `0.5`) | HTTP/1.1: `connection: close` and close after the response |
//!
//! A weighted list is `VALUE:PERCENT,...`: `status=503:20,429:5` answers 503 to 20% of
//! requests, 429 to 5%, and the default (200) to the remaining 75%. Percentages may be
//! fractional (at most 4 decimals) and must add up to at most 100. A single value
//! without a percentage applies to every request; a single `VALUE:PERCENT` is a list of
//! one. An empty value is the same as leaving the parameter out, unknown parameters are
//! ignored and a repeated parameter (other than `header`) keeps its last value — all as
//! in Fortio. Any malformed value is a [`ParamError`], which the handler turns into a
//! 400 whose body is the error message.
//!
//! Percentages are kept as integer parts per million, so sums are exact and a draw is
//! one `random_range(0..1_000_000)`. Only parameters that actually have a choice to
//! make consume randomness, in a fixed order (status, delay, size, close), so a seeded
//! RNG gives reproducible outcomes.

use std::borrow::Cow;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use rand::Rng;
use results::units::{parse_duration, parse_size};

pub use super::param_error::ParamError;

/// 100% in parts per million.
const ONE_HUNDRED_PERCENT_PPM: u32 = 1_000_000;

/// Response headers `header=` may not set: they describe the message framing or the
/// connection, which the server owns (use `size=` and `close=` instead).
const RESERVED_HEADERS: [&str; 8] = [
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What the server allows a request to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest delay; longer requested delays are capped to it (not refused).
    pub max_delay: Duration,
    /// Largest `size`; larger requested sizes are refused.
    pub max_size: u64,
}

/// A value chosen per request: always the same one, or one of several by weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice<T> {
    /// Every request gets this value.
    Always(T),
    /// `(value, cumulative parts per million)` in list order. A draw past the last
    /// cumulative weight gets the parameter's default.
    Weighted(Vec<(T, u32)>),
}

impl<T: Copy> Choice<T> {
    /// The value for one request, or `None` for the parameter's default. Consumes one
    /// random number for a weighted list and none otherwise.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<T> {
        match self {
            Choice::Always(value) => Some(*value),
            Choice::Weighted(entries) => {
                let ticket = rng.random_range(0..ONE_HUNDRED_PERCENT_PPM);
                entries
                    .iter()
                    .find(|(_, cumulative_ppm)| ticket < *cumulative_ppm)
                    .map(|(value, _)| *value)
            }
        }
    }
}

/// The parsed query of one echo request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EchoParams {
    /// `delay=`; the default is no delay.
    pub delay: Option<Choice<Duration>>,
    /// `status=`; the default is 200.
    pub status: Option<Choice<StatusCode>>,
    /// `size=` in bytes; the default is to echo the request body.
    pub size: Option<Choice<u64>>,
    /// `header=`, in query order.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `close=` as parts per million of responses; the default is never.
    pub close_ppm: u32,
}

/// The outcome drawn for one request from its [`EchoParams`]. The default is a plain
/// echo: 200, no delay, no close.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Draw {
    /// Status to answer with.
    pub status: StatusCode,
    /// Delay before answering, already capped at [`Limits::max_delay`].
    pub delay: Duration,
    /// Whether the requested delay was over the cap.
    pub delay_capped: bool,
    /// Bytes to answer with instead of the echo, if any.
    pub size: Option<u64>,
    /// Whether to close the (HTTP/1.1) connection after this response.
    pub close: bool,
}

// === impl EchoParams ===

impl EchoParams {
    /// Parses a query string (the part of the URI after `?`).
    pub fn parse(query: &str, limits: &Limits) -> Result<Self, ParamError> {
        let mut params = EchoParams::default();
        for pair in query.split('&') {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            if raw_value.is_empty() {
                continue;
            }
            // A key that does not decode cannot be one of ours: ignored, like any
            // other unknown parameter.
            let Some(key) = decode(raw_key) else { continue };
            let param = match &*key {
                "delay" | "status" | "size" | "header" | "close" => &*key,
                _ => continue,
            };
            let value = decode(raw_value).ok_or_else(|| ParamError::Encoding {
                param: param.to_owned(),
                value: raw_value.to_owned(),
            })?;
            match param {
                "delay" => params.delay = Some(parse_choice("delay", &value, parse_delay)?),
                "status" => params.status = Some(parse_choice("status", &value, parse_status)?),
                "size" => {
                    let parse = |text: &str| parse_size_within(text, limits.max_size);
                    params.size = Some(parse_choice("size", &value, parse)?);
                }
                "header" => params.headers.push(parse_header(&value)?),
                _ => params.close_ppm = parse_close(&value)?,
            }
        }
        Ok(params)
    }

    /// Draws the outcome for one request. Randomness is consumed in a fixed order
    /// (status, delay, size, close) and only by parameters with a choice to make.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R, limits: &Limits) -> Draw {
        let status = self
            .status
            .as_ref()
            .and_then(|c| c.draw(rng))
            .unwrap_or(StatusCode::OK);
        let wanted = self
            .delay
            .as_ref()
            .and_then(|c| c.draw(rng))
            .unwrap_or_default();
        let size = self.size.as_ref().and_then(|c| c.draw(rng));
        let close = match self.close_ppm {
            0 => false,
            ONE_HUNDRED_PERCENT_PPM => true,
            ppm => rng.random_range(0..ONE_HUNDRED_PERCENT_PPM) < ppm,
        };
        Draw {
            status,
            delay: wanted.min(limits.max_delay),
            delay_capped: wanted > limits.max_delay,
            size,
            close,
        }
    }
}

/// Parses `VALUE`, `VALUE:PERCENT` or `VALUE:PERCENT,VALUE:PERCENT,...`.
fn parse_choice<T>(
    param: &'static str,
    text: &str,
    parse_one: impl Fn(&str) -> Result<T, ParamError>,
) -> Result<Choice<T>, ParamError> {
    if !text.contains([':', ',']) {
        return parse_one(text.trim()).map(Choice::Always);
    }
    let mut entries = Vec::new();
    let mut total_ppm: u64 = 0;
    for entry in text.split(',') {
        let Some((value, percent)) = entry.rsplit_once(':') else {
            return Err(ParamError::MissingPercent {
                param,
                entry: entry.to_owned(),
                value: text.to_owned(),
                example: example_list(param),
            });
        };
        let value = parse_one(value.trim())?;
        let ppm = parse_percent_ppm(percent).ok_or_else(|| ParamError::Percent {
            param,
            entry: entry.to_owned(),
            percent: percent.to_owned(),
        })?;
        total_ppm += u64::from(ppm);
        entries.push((value, u32::try_from(total_ppm).unwrap_or(u32::MAX)));
    }
    if total_ppm > u64::from(ONE_HUNDRED_PERCENT_PPM) {
        return Err(ParamError::PercentTotal {
            param,
            value: text.to_owned(),
            total: format_ppm(total_ppm),
        });
    }
    Ok(Choice::Weighted(entries))
}

fn example_list(param: &str) -> &'static str {
    match param {
        "delay" => "10ms:50,200ms:5",
        "size" => "1024:50,65536:5",
        _ => "503:20,429:5",
    }
}

fn parse_delay(text: &str) -> Result<Duration, ParamError> {
    parse_duration(text).map_err(|reason| ParamError::Delay { reason })
}

fn parse_status(text: &str) -> Result<StatusCode, ParamError> {
    let code = text
        .parse::<u16>()
        .ok()
        .and_then(|n| StatusCode::from_u16(n).ok())
        .filter(|code| code.as_u16() <= 599)
        .ok_or_else(|| ParamError::Status {
            value: text.to_owned(),
        })?;
    if code.is_informational() {
        return Err(ParamError::StatusInformational {
            value: text.to_owned(),
        });
    }
    Ok(code)
}

fn parse_size_within(text: &str, max: u64) -> Result<u64, ParamError> {
    let bytes = parse_size(text).map_err(|reason| ParamError::Size { reason })?;
    if bytes > max {
        return Err(ParamError::SizeOverMax {
            value: text.to_owned(),
            bytes,
            max,
        });
    }
    Ok(bytes)
}

fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), ParamError> {
    let Some((name, value)) = text.split_once(':') else {
        return Err(ParamError::HeaderFormat {
            value: text.to_owned(),
        });
    };
    let name = name.trim();
    let value = value.trim();
    let header_name =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| ParamError::HeaderName {
            name: name.to_owned(),
        })?;
    if RESERVED_HEADERS.contains(&header_name.as_str()) {
        return Err(ParamError::HeaderReserved {
            name: name.to_owned(),
        });
    }
    let header_value = HeaderValue::from_str(value).map_err(|_| ParamError::HeaderValue {
        name: name.to_owned(),
        value: value.to_owned(),
    })?;
    Ok((header_name, header_value))
}

fn parse_close(text: &str) -> Result<u32, ParamError> {
    match text {
        "true" => Ok(ONE_HUNDRED_PERCENT_PPM),
        "false" => Ok(0),
        _ => parse_percent_ppm(text).ok_or_else(|| ParamError::Close {
            value: text.to_owned(),
        }),
    }
}

/// `20` → 200_000, `0.5` → 5_000, `100` → 1_000_000; a trailing `%` is allowed.
/// `None` for anything else, including more than 4 decimals or more than 100.
fn parse_percent_ppm(text: &str) -> Option<u32> {
    let text = text.trim();
    let text = text.strip_suffix('%').unwrap_or(text);
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || !digits(int) || !digits(frac) || frac.len() > 4 {
        return None;
    }
    if int.len() > 3 {
        return None;
    }
    let int: u32 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut frac_ppm: u32 = 0;
    let mut scale = 1_000;
    for digit in frac.bytes() {
        frac_ppm += u32::from(digit - b'0') * scale;
        scale /= 10;
    }
    let ppm = int * 10_000 + frac_ppm;
    (ppm <= ONE_HUNDRED_PERCENT_PPM).then_some(ppm)
}

/// 1_050_000 → `105`, 1_005_000 → `100.5`.
fn format_ppm(ppm: u64) -> String {
    let int = ppm / 10_000;
    let frac = ppm % 10_000;
    if frac == 0 {
        return int.to_string();
    }
    let frac = format!("{frac:04}");
    format!("{int}.{}", frac.trim_end_matches('0'))
}

/// Decodes `%XX` escapes and `+` (space), as HTML forms and Go's `FormValue` do.
/// Borrows when there is nothing to decode. `None` for a bad escape or non-UTF-8.
fn decode(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.contains(['%', '+']) {
        return Some(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
#[path = "params_tests.rs"]
mod tests;
