//! The birth-registration province codes of Circular 07/2016/TT-BCA and the 2025 merger.
//!
//! Shipped as data (`data/provinces.tsv`), parsed once on first use: one row per old code, with
//! its Vietnamese name and the province it belongs to since Resolution 202/2025/QH15. Where our
//! sources disagree on the merger the row says so (`merger_verified == false`).

use std::sync::LazyLock;

/// One birth-registration province code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Province {
    /// Three digits, as in the ID number: `"001"`.
    pub code: &'static str,
    /// The province's name when the code was assigned, with diacritics: `"Hà Giang"`.
    pub name: &'static str,
    /// The province it is part of since 1 July 2025: `"Tuyên Quang"`.
    pub current_province: &'static str,
    /// Whether the merger row is confirmed by more than one source.
    pub merger_verified: bool,
}

static TABLE: LazyLock<Vec<Province>> = LazyLock::new(|| {
    include_str!("../data/provinces.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&'static str> = line.split('\t').collect();
            assert_eq!(cols.len(), 4, "provinces.tsv: bad row {line:?}");
            Province {
                code: cols[0],
                name: cols[1],
                current_province: cols[2],
                merger_verified: cols[3] == "yes",
            }
        })
        .collect()
});

/// The province with this three-digit code, if it is one of the 63.
pub fn by_code(code: &str) -> Option<&'static Province> {
    // The table is in code order (a test checks it), so a binary search finds the row.
    TABLE
        .binary_search_by(|p| p.code.cmp(code))
        .ok()
        .map(|i| &TABLE[i])
}

/// All 63 codes, in code order.
pub fn all() -> &'static [Province] {
    &TABLE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_63_unique_codes_and_34_provinces() {
        assert_eq!(all().len(), 63);
        let mut codes: Vec<_> = all().iter().map(|p| p.code).collect();
        codes.dedup();
        assert_eq!(codes.len(), 63, "codes are sorted and unique");
        let mut current: Vec<_> = all().iter().map(|p| p.current_province).collect();
        current.sort();
        current.dedup();
        assert_eq!(current.len(), 34);
    }

    #[test]
    fn merged_codes_point_at_the_new_province() {
        assert_eq!(by_code("002").unwrap().name, "Hà Giang");
        assert_eq!(by_code("002").unwrap().current_province, "Tuyên Quang");
        assert_eq!(by_code("079").unwrap().current_province, "Hồ Chí Minh");
        assert!(by_code("003").is_none());
        assert!(by_code("097").is_none());
    }
}
