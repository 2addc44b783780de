//! The selector flags of `esdb tail` and `esdb sub`: a stream, `--all`, `--type`, `--pattern`
//! or `--payload`.

use esdb_client::Selector;

use crate::cli::common::CliError;

#[derive(Debug, Clone, Default, clap::Args)]
#[group(multiple = false)]
pub struct SelectorArgs {
    /// A stream's events
    pub stream: Option<String>,
    /// Every event of the store
    #[arg(long)]
    pub all: bool,
    /// Events of these types, comma-separated
    #[arg(long = "type", value_name = "TYPE[,TYPE…]")]
    pub event_type: Option<String>,
    /// Events of streams whose id matches; * matches any run of characters
    #[arg(long, value_name = "PATTERN")]
    pub pattern: Option<String>,
    /// Events whose record matches this JSON object partially, e.g. '{"data":{"country":"NL"}}'
    #[arg(long, value_name = "JSON")]
    pub payload: Option<String>,
}

impl SelectorArgs {
    /// The selector given, if any; a malformed one is a usage error.
    pub fn selector(&self) -> Result<Option<Selector>, CliError> {
        let (type_name, text) = if let Some(stream) = &self.stream {
            ("stream", stream.as_str())
        } else if self.all {
            ("stream", "$all")
        } else if let Some(types) = &self.event_type {
            ("event_type", types.as_str())
        } else if let Some(pattern) = &self.pattern {
            ("event_pattern", pattern.as_str())
        } else if let Some(payload) = &self.payload {
            ("event_payload", payload.as_str())
        } else {
            return Ok(None);
        };
        Selector::parse(type_name, text)
            .map(Some)
            .map_err(|e| CliError::Usage(format!("{}: {}", e.code, e.message)))
    }
}
