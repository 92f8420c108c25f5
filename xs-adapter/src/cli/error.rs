//! What stops the command: one line naming the thing that went wrong and how to fix it.

use std::fmt;

/// A failure of the command (exit status 2). Its `Display` is one line: the place (a file, a
/// socket, a line and column, a JSON path, a lock file), what is wrong with it, and the fix in
/// parentheses.
#[derive(Debug, thiserror::Error)]
pub struct CliError {
    /// The thing and what is wrong with it, e.g. `cannot read /x.txt: No such file or directory`.
    pub problem: String,
    /// What to do about it, e.g. `give --xenstore a readable dump, or - for stdin`.
    pub fix: Option<String>,
}

impl CliError {
    pub fn new(problem: impl fmt::Display, fix: impl Into<String>) -> CliError {
        CliError { problem: problem.to_string(), fix: Some(fix.into()) }
    }

    pub fn without_fix(problem: impl fmt::Display) -> CliError {
        CliError { problem: problem.to_string(), fix: None }
    }
}

/// Keeps a message on one line whatever the underlying error printed.
fn one_line(s: &str) -> String {
    s.split(['\n', '\r']).map(str::trim).filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ")
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&one_line(&self.problem))?;
        if let Some(fix) = &self.fix {
            write!(f, " ({})", one_line(fix))?;
        }
        Ok(())
    }
}

/// The text of an IO error without Rust's ` (os error N)` suffix, as the C tools print it.
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_with_the_fix() {
        let e = CliError::new("cannot read /x: gone\nreally", "give --xenstore a readable dump");
        assert_eq!(e.to_string(), "cannot read /x: gone really (give --xenstore a readable dump)");
        let io = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_reason(&io), "No such file or directory");
    }
}
