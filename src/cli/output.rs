//! Output helpers: JSON for scripts, aligned tables and readable times for people.

use std::io::Write;

use serde::Serialize;

use super::CliContext;

/// Prints `value` as pretty JSON on the command's stdout.
pub fn json<T: Serialize + ?Sized>(ctx: &CliContext, value: &T) -> anyhow::Result<()> {
    let mut out = ctx.out();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Prints rows as left-aligned columns (the last column unpadded); an all-empty header
/// is not printed.
pub fn table(ctx: &CliContext, header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = ctx.out();
    let line =
        |cells: &mut dyn Iterator<Item = &str>, out: &mut dyn Write| -> std::io::Result<()> {
            let cells: Vec<&str> = cells.collect();
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad + 2));
                }
            }
            writeln!(out, "{}", text.trim_end())
        };
    if header.iter().any(|h| !h.is_empty()) {
        line(&mut header.iter().copied(), &mut out)?;
    }
    for row in rows {
        line(&mut row.iter().map(String::as_str), &mut out)?;
    }
    Ok(())
}

/// Nanoseconds since the epoch as local time, `2026-12-04 20:45:41`.
pub fn time(ns: i64) -> String {
    match jiff::Timestamp::from_nanosecond(ns as i128) {
        Ok(ts) => ts
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => format!("@{ns}ns"),
    }
}

/// Unix permission bits as `rwxr-xr-x`, prefixed by the kind letter.
pub fn mode(kind: char, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(kind);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// Parses `--since`: an RFC 3339 timestamp, a date (midnight UTC), or a duration ago
/// (`90s`, `15m`, `2h`, `3d`, `1w`). Returns nanoseconds since the epoch.
pub fn parse_since(text: &str) -> anyhow::Result<i64> {
    let t = text.trim();
    if let Some((num, unit)) = t
        .find(|c: char| !c.is_ascii_digit())
        .filter(|&i| i > 0)
        .map(|i| t.split_at(i))
    {
        let secs: Option<i64> = match unit {
            "s" => Some(1),
            "m" => Some(60),
            "h" => Some(3600),
            "d" => Some(86400),
            "w" => Some(7 * 86400),
            _ => None,
        };
        if let (Some(mult), Ok(n)) = (secs, num.parse::<i64>()) {
            let now = jiff::Timestamp::now().as_nanosecond() as i64;
            return Ok(now.saturating_sub(n.saturating_mul(mult).saturating_mul(1_000_000_000)));
        }
    }
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return Ok(ts.as_nanosecond() as i64);
    }
    if let Ok(date) = t.parse::<jiff::civil::Date>()
        && let Ok(z) = date.to_zoned(jiff::tz::TimeZone::UTC)
    {
        return Ok(z.timestamp().as_nanosecond() as i64);
    }
    anyhow::bail!(crate::error::Error::new(
        crate::error::ErrorKind::InvalidInput,
        format!(
            "cannot read {text:?} as a date: use 2026-12-01, 2026-12-01T10:00:00Z, or a duration ago like 2h or 3d"
        )
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        assert_eq!(
            parse_since("2026-12-01").unwrap(),
            1_796_083_200_000_000_000
        );
        assert_eq!(
            parse_since("2026-12-01T00:00:01Z").unwrap(),
            1_796_083_201_000_000_000
        );
        let now = jiff::Timestamp::now().as_nanosecond() as i64;
        let two_h = parse_since("2h").unwrap();
        assert!((now - two_h - 7_200_000_000_000).abs() < 5_000_000_000);
        assert!(parse_since("yesterday-ish").is_err());
    }

    #[test]
    fn mode_string() {
        assert_eq!(mode('-', 0o644), "-rw-r--r--");
        assert_eq!(mode('d', 0o755), "drwxr-xr-x");
    }
}
