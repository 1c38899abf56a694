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
                key: "max_items",
                want: "an integer >= 1",
            },
        ),
        (
            "max_items = 'x'",
            OptionError::Invalid {
                key: "max_items",
                want: "an integer >= 1",
            },
        ),
        (
            "versioning = 1",
            OptionError::Invalid {
                key: "versioning",
                want: "true or false",
            },
        ),
        ("colour = 1", OptionError::Unknown("colour".into())),
    ] {
        let t: toml::Table = toml::from_str(src).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(RosterOpts::from_table(&t), Err(want), "{src}");
    }
}
