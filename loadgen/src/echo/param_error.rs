//! Why a query parameter was refused: [`ParamError`], whose message is the body of
//! the 400 response.

use results::units::UnitError;

/// A query parameter the echo server could not use. Each message names the parameter,
/// quotes the bad value and says what would be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A `%` escape that is not two hex digits, or bytes that are not UTF-8.
    #[error(
        "{param}: '{value}' is not valid query-string encoding (expected UTF-8 text with %XX escapes)"
    )]
    Encoding { param: String, value: String },
    /// `status` is not a number from 100 to 999.
    #[error(
        "status: '{value}' is not an HTTP status code (expected 200-599, or a weighted list like 503:20,429:5)"
    )]
    Status { value: String },
    /// `status` is a 1xx code, which cannot be a final response.
    #[error(
        "status: '{value}' is an informational (1xx) code, which cannot end a response (expected 200-599, or a weighted list like 503:20,429:5)"
    )]
    StatusInformational { value: String },
    /// `delay` is not a duration.
    #[error("delay: {reason}; a weighted list like 10ms:50,200ms:5 is also accepted")]
    Delay { reason: UnitError },
    /// `size` is not a byte count.
    #[error("size: {reason}; a weighted list like 1024:50,65536:5 is also accepted")]
    Size { reason: UnitError },
    /// `size` asks for more than the server allows.
    #[error(
        "size: '{value}' is {bytes} bytes, over this server's maximum of {max} bytes (meshrig echo --max-size)"
    )]
    SizeOverMax { value: String, bytes: u64, max: u64 },
    /// A weighted-list entry has no `:PERCENT`.
    #[error(
        "{param}: '{entry}' in '{value}' has no percentage (in a list every entry is VALUE:PERCENT, e.g. {example})"
    )]
    MissingPercent {
        param: &'static str,
        entry: String,
        value: String,
        example: &'static str,
    },
    /// A percentage is not a number from 0 to 100 with at most 4 decimals.
    #[error(
        "{param}: '{percent}' in '{entry}' is not a percentage (expected a number from 0 to 100 with at most 4 decimals, e.g. 20 or 0.5)"
    )]
    Percent {
        param: &'static str,
        entry: String,
        percent: String,
    },
    /// The percentages of a weighted list add up to more than 100.
    #[error(
        "{param}: the percentages in '{value}' add up to {total}%, over 100 (whatever is left below 100% gets the default)"
    )]
    PercentTotal {
        param: &'static str,
        value: String,
        total: String,
    },
    /// `header` is not `Name:Value`.
    #[error("header: '{value}' is not Name:Value (expected e.g. header=X-Trace:abc)")]
    HeaderFormat { value: String },
    /// `header` has a name that is not a valid HTTP header name.
    #[error(
        "header: '{name}' is not a valid header name (expected letters, digits and !#$%&'*+-.^_`|~, e.g. X-Trace)"
    )]
    HeaderName { name: String },
    /// `header` has a value that cannot be sent (control characters).
    #[error(
        "header: the value '{value}' of {name} cannot be sent (expected visible characters, spaces or tabs)"
    )]
    HeaderValue { name: String, value: String },
    /// `header` names a framing or connection header the server owns.
    #[error(
        "header: '{name}' cannot be set with header= (it controls message framing or the connection; use size= or close= instead)"
    )]
    HeaderReserved { name: String },
    /// `close` is not `true`, `false` or a percentage.
    #[error(
        "close: '{value}' is not true, false or a percentage (expected close=true, or e.g. close=5 to close after 5% of responses)"
    )]
    Close { value: String },
}
