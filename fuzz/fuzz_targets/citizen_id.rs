//! A personal ID number (CCCD) or an old CMND as typed, imported or received from the IdP.
#![no_main]

use lienthong_citizen::{CitizenId, LegacyCmnd};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = CitizenId::parse(input) {
        // A parsed number is 12 digits whose parts all answer.
        assert_eq!(id.as_str().len(), 12);
        let _ = (id.province(), id.sex(), id.birth_year());
        let _ = id.check_not_born_after(2026);
        let masked = id.masked();
        assert_eq!((masked.len(), &masked[3..10]), (12, "*******"));
    }
    if let Ok(cmnd) = LegacyCmnd::parse(input) {
        assert_eq!(cmnd.as_str().len(), 9);
        let _ = cmnd.masked();
    }
});
