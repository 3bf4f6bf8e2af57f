//! PEM in and out: every certificate block of a text, and DER back to PEM with LF line
//! endings (as rcgen writes them).

use crate::CaError;

/// The DER of every `CERTIFICATE` block in `text`, in order; other blocks are skipped.
pub(crate) fn certificates(text: &str, what: &str) -> Result<Vec<Vec<u8>>, CaError> {
    let blocks = pem::parse_many(text).map_err(|e| CaError::Chain(format!("{what}: {e}")))?;
    let certs: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if certs.is_empty() {
        return Err(CaError::Chain(format!(
            "{what}: no '-----BEGIN CERTIFICATE-----' block"
        )));
    }
    Ok(certs)
}

/// One DER certificate as PEM.
pub(crate) fn certificate_pem(der: &[u8]) -> String {
    let block = pem::Pem::new("CERTIFICATE", der.to_vec());
    pem::encode_config(
        &block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// How many `CERTIFICATE` blocks `text` holds (0 if it is not PEM).
pub fn count_certificates(text: &str) -> usize {
    pem::parse_many(text).map_or(0, |blocks| {
        blocks.iter().filter(|b| b.tag() == "CERTIFICATE").count()
    })
}
