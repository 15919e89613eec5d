//! Plain-text tables: columns as wide as their widest cell, the last one left ragged.

/// A table with a header row.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether it has rows besides the header.
    pub fn is_empty(&self) -> bool {
        self.rows.len() == 1
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// A page of a listing: `table`, or `empty` when it has no rows, and how to ask for the next
/// page when there is one.
pub fn page(table: &Table, empty: &str, next_cursor: Option<&str>) -> String {
    let mut report = if table.is_empty() {
        format!("{empty}\n")
    } else {
        table.to_string()
    };
    if let Some(next) = next_cursor {
        report.push_str(&format!("more: --cursor {next}\n"));
    }
    report
}

/// `text` cut to `max` characters, with `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    let text = text.lines().next().unwrap_or_default();
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The first 12 characters of a digest.
pub fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut table = Table::new(&["ID", "STATUS", "ERROR"]);
        table.row(vec!["a".into(), "completed".into(), String::new()]);
        table.row(vec!["longer-id".into(), "failed".into(), "boom".into()]);
        assert_eq!(
            table.to_string(),
            "ID         STATUS     ERROR\na          completed\nlonger-id  failed     boom\n"
        );
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("line one\nline two", 20), "line one");
    }
}
