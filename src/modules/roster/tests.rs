//! Options of `[modules.roster]`.

use super::*;

#[test]
fn options_parse_and_reject() {
    let t: toml::Table =
        toml::from_str("max_items = 5\nversioning = false").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        RosterOpts::from_table(&t),
        Ok(RosterOpts {
            max_items: 5,
            versioning: false
        })
    );
    assert_eq!(
        RosterOpts::from_table(&toml::Table::new()),
        Ok(RosterOpts::default())
    );
    for (src, want) in [
        (
            "max_items = 0",
            OptionError::Invalid {
                module: "roster",
                key: "max_items",
                expected: "an integer >= 1".into(),
            },
        ),
        (
            "max_items = 'x'",
            OptionError::Invalid {
                module: "roster",
                key: "max_items",
                expected: "an integer >= 1".into(),
            },
        ),
        (
            "versioning = 1",
            OptionError::Invalid {
                module: "roster",
                key: "versioning",
                expected: "true or false".into(),
            },
        ),
        (
            "colour = 1",
            OptionError::Unknown {
                module: "roster",
                key: "colour".into(),
                known: "max_items, versioning".into(),
            },
        ),
    ] {
        let t: toml::Table = toml::from_str(src).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(RosterOpts::from_table(&t), Err(want), "{src}");
    }
}
