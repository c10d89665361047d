//! The `lienthong` command line as an operator uses it.

use std::process::{Command, Output};

fn lienthong(args: &[&str], database: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .args(args)
        .env("LIENTHONG_DATABASE_URL", database)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn accounts_import_reports_bad_rows_is_all_or_nothing_and_idempotent() {
    let dir = std::env::temp_dir().join(format!("lienthong-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.join("directory.db").display());
    let file = dir.join("links.csv");
    std::fs::write(&file, "number,local_account_id\n001085004512,A-1\n00108500451,A-2\n040123456,A-3\n001085004512,A-4\n").unwrap();
    let file = file.to_str().unwrap();

    let out = lienthong(&["accounts", "import", "--realm", "mc", file], &db);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(":3: ID number: must be exactly 12 digits"),
        "{err}"
    );
    assert!(
        err.contains(":5: number 001*******12 already on line 2"),
        "{err}"
    );
    assert!(text(&out.stdout).contains("nothing imported: 2 bad row(s)"));
    let export = lienthong(&["accounts", "export", "--realm", "mc"], &db);
    assert_eq!(
        text(&export.stdout).lines().count(),
        1,
        "only the header: nothing was imported"
    );

    let skip_invalid = [
        "accounts",
        "import",
        "--realm",
        "mc",
        "--skip-invalid",
        file,
    ];
    let out = lienthong(&skip_invalid, &db);
    assert_eq!(out.status.code(), Some(1), "bad rows are still reported");
    assert!(
        text(&out.stdout).contains("2 imported, 0 unchanged, 2 rejected"),
        "{}",
        text(&out.stdout)
    );
    let again = lienthong(&skip_invalid, &db);
    assert!(
        text(&again.stdout).contains("0 imported, 2 unchanged"),
        "re-import is a no-op"
    );

    let export = text(&lienthong(&["accounts", "export", "--realm", "mc"], &db).stdout);
    assert_eq!(
        export,
        "number,local_account_id\n001085004512,A-1\n040123456,A-3\n"
    );
    let show = lienthong(&["accounts", "show", "001085004512"], &db);
    assert!(show.status.success());
    assert!(text(&show.stdout).contains("\"local_account_id\": \"A-1\""));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn citizen_id_check_explains_a_number() {
    let ok = Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .args(["citizen-id", "check", "002301004418"])
        .output()
        .unwrap();
    assert!(ok.status.success());
    let json: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(json["province"]["name"], "Hà Giang");
    assert_eq!(json["province"]["current_province"], "Tuyên Quang");
    assert_eq!(
        (json["sex"].as_str(), json["birth_year"].as_i64()),
        (Some("female"), Some(2001))
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .args([
            "citizen-id",
            "check",
            "001085004512",
            "--birthdate",
            "1990-01-01",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert_eq!(json["valid"], false);
    assert!(json["reason"].as_str().unwrap().contains("1985"));
    // A birth year that has not come yet (century digit 2: the 2000s, year 95).
    let future = Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .args(["citizen-id", "check", "001295012345"])
        .output()
        .unwrap();
    assert_eq!(future.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&future.stdout).unwrap();
    assert_eq!(json["reason"], "the birth year 2095 is in the future");
}
