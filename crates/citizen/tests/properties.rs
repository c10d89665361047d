//! Properties of the number types over many generated inputs: every valid number round-trips;
//! every malformed input gets the specific error that names what is wrong.

use lienthong_citizen::{CitizenId, CitizenIdError, LegacyCmnd, LegacyCmndError, Sex, province};
use proptest::prelude::*;

/// A valid 12-digit number, from its parts.
fn valid_number() -> impl Strategy<Value = (String, &'static str, u8, u8)> {
    (0..province::all().len(), 0u8..10, 0u8..100, 0u32..1_000_000).prop_map(|(p, g, yy, r)| {
        let code = province::all()[p].code;
        (format!("{code}{g}{yy:02}{r:06}"), code, g, yy)
    })
}

proptest! {
    #[test]
    fn every_valid_number_round_trips((text, code, g, yy) in valid_number()) {
        let id = CitizenId::parse(&text).unwrap();
        prop_assert_eq!(id.as_str(), text.as_str());
        prop_assert_eq!(id.province_code(), code);
        prop_assert_eq!(id.sex(), if g % 2 == 0 { Sex::Male } else { Sex::Female });
        prop_assert_eq!(id.birth_year(), 1900 + 100 * i32::from(g / 2) + i32::from(yy));
        let json = serde_json::to_string(&id).unwrap();
        prop_assert_eq!(serde_json::from_str::<CitizenId>(&json).unwrap(), id.clone());
        prop_assert!(!id.to_string().contains(&text[3..10]), "printed masked");
    }

    #[test]
    fn a_wrong_length_is_named(s in "[0-9]{0,30}") {
        prop_assume!(s.len() != 12);
        prop_assert_eq!(CitizenId::parse(&s), Err(CitizenIdError::WrongLength(s.len())));
    }

    #[test]
    fn the_first_non_digit_is_named((text, _, _, _) in valid_number(), pos in 0usize..12, c in "[^0-9]") {
        let mut chars: Vec<char> = text.chars().collect();
        chars[pos] = c.chars().next().unwrap();
        let bad: String = chars.into_iter().collect();
        prop_assert_eq!(CitizenId::parse(&bad), Err(CitizenIdError::NotADigit { position: pos + 1 }));
    }

    #[test]
    fn an_unknown_province_is_named(code in 0u16..1000, rest in "[0-9]{9}") {
        let code = format!("{code:03}");
        prop_assume!(province::by_code(&code).is_none());
        prop_assert_eq!(CitizenId::parse(&format!("{code}{rest}")), Err(CitizenIdError::UnknownProvince(code)));
    }

    #[test]
    fn legacy_numbers_round_trip_and_errors_are_specific(s in "[0-9]{9}", other in "[0-9]{0,20}") {
        let parsed = LegacyCmnd::parse(&s).unwrap();
        prop_assert_eq!(parsed.as_str(), s.as_str());
        prop_assume!(other.len() != 9);
        prop_assert_eq!(LegacyCmnd::parse(&other), Err(LegacyCmndError::WrongLength(other.len())));
    }
}
