use super::*;
use crate::xml::Stanza;

const OWNER: &str = "a@x";
/// Archive time of row `i` (µs): one second apart from 2020-01-01T00:00:00Z.
const T0: i64 = 1_577_836_800_000_000;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    (dir, store)
}

/// 120 rows with ids 1001..=1120: with b@x/phone (i % 3 == 0), b@x/laptop (i % 3 == 1) or c@x;
/// and a row of another owner, which no query of a@x may see.
fn fill(store: &Store) {
    let rows: Vec<_> = (1..=120)
        .map(|i: i64| {
            let with = match i % 3 {
                0 => "b@x/phone",
                1 => "b@x/laptop",
                _ => "c@x",
            };
            let stanza = format!("<message id='m{i}'><body>{i}</body></message>");
            test_row(OWNER, 1000 + i, with, T0 + i * 1_000_000, &stanza)
        })
        .collect();
    store.mam_append(&rows).unwrap_or_else(|e| panic!("{e}"));
    let mut other = rows[0].clone();
    other.owner = "z@x".into();
    other.id = 5000;
    store.mam_append(&[other]).unwrap_or_else(|e| panic!("{e}"));
}

fn parse(inner: &str) -> Result<Query, QueryError> {
    let xml = format!("<query xmlns='urn:xmpp:mam:2' queryid='q1'>{inner}</query>");
    let el = Stanza::parse(xml.into_bytes())
        .and_then(|s| s.tree())
        .unwrap_or_else(|e| panic!("{e}"));
    Query::parse(&el, &MamOptions::default())
}

fn ask(store: &Store, inner: &str) -> Result<Page, QueryError> {
    run(store, OWNER, &parse(inner)?)
}

fn set(inner: &str) -> String {
    format!("<set xmlns='http://jabber.org/protocol/rsm'>{inner}</set>")
}

fn form(fields: &[(&str, &str)]) -> String {
    let f: String = fields
        .iter()
        .map(|(k, v)| format!("<field var='{k}'><value>{v}</value></field>"))
        .collect();
    format!("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>{f}</x>")
}

/// The row numbers (1..=120) of a page, in the order sent.
fn nums(p: &Page) -> Vec<i64> {
    p.rows.iter().map(|r| r.id - 1000).collect()
}

fn range(a: i64, b: i64) -> Vec<i64> {
    (a..=b).collect()
}

#[test]
fn pages_forward_with_after_last() {
    let (_d, s) = open();
    fill(&s);
    let mut after = String::new();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let rsm = if after.is_empty() {
            set("<max>50</max>")
        } else {
            set(&format!("<max>50</max><after>{after}</after>"))
        };
        let p = ask(&s, &rsm).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(p.count, Some(120));
        assert_eq!(p.index, Some(seen.len() as u64));
        assert_eq!(p.first, p.rows.first().map(|r| r.id));
        assert_eq!(p.last, p.rows.last().map(|r| r.id));
        seen.extend(nums(&p));
        pages += 1;
        if p.complete {
            break;
        }
        assert_eq!(p.rows.len(), 50);
        after = id::encode(p.last.unwrap_or_else(|| panic!("no last")));
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, range(1, 120));
}

#[test]
fn pages_backward_from_the_last_page() {
    let (_d, s) = open();
    fill(&s);
    let p = ask(&s, &set("<max>50</max><before/>")).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(nums(&p), range(71, 120));
    assert_eq!((p.index, p.complete), (Some(70), false));
    let before = id::encode(p.first.unwrap_or_default());
    let p = ask(&s, &set(&format!("<max>50</max><before>{before}</before>")))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(nums(&p), range(21, 70));
    assert_eq!((p.index, p.complete), (Some(20), false));
    let before = id::encode(p.first.unwrap_or_default());
    let p = ask(&s, &set(&format!("<max>50</max><before>{before}</before>")))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(nums(&p), range(1, 20));
    assert_eq!((p.index, p.complete, p.count), (Some(0), true, Some(120)));
}

#[test]
fn flip_page_reverses_the_order_not_the_page() {
    let (_d, s) = open();
    fill(&s);
    let plain = ask(&s, &set("<max>10</max><before/>")).unwrap_or_else(|e| panic!("{e:?}"));
    let flipped = ask(
        &s,
        &format!("{}<flip-page/>", set("<max>10</max><before/>")),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let mut rev = nums(&plain);
    rev.reverse();
    assert_eq!(nums(&flipped), rev);
    assert_eq!((flipped.first, flipped.last), (plain.first, plain.last));
    assert_eq!(flipped.first, Some(1111));
}

#[test]
fn default_page_and_empty_page() {
    let (_d, s) = open();
    fill(&s);
    let p = ask(&s, "").unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(nums(&p), range(1, 50));
    assert!(!p.complete);
    let p = ask(&s, &set("<max>0</max>")).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(p.rows.is_empty() && !p.complete);
    assert_eq!((p.first, p.index, p.count), (None, None, Some(120)));
    let empty = run(
        &s,
        "nobody@x",
        &parse("").unwrap_or_else(|e| panic!("{e:?}")),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(empty.rows.is_empty() && empty.complete);
    assert_eq!(empty.count, Some(0));
}

#[test]
fn with_bare_matches_every_resource_full_only_one() {
    let (_d, s) = open();
    fill(&s);
    let p = ask(&s, &form(&[("with", "b@x")])).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.count, Some(80));
    assert!(nums(&p).iter().all(|i| i % 3 != 2));
    let p = ask(&s, &form(&[("with", "b@x/phone")])).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.count, Some(40));
    assert_eq!(nums(&p)[..3], [3, 6, 9]);
    let p = ask(&s, &form(&[("with", "c@x")])).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.count, Some(40));
}

#[test]
fn start_and_end_are_inclusive() {
    let (_d, s) = open();
    fill(&s);
    // Rows 10..=14: 2020-01-01T00:00:10Z to 00:00:14Z.
    let f = form(&[
        ("start", "2020-01-01T00:00:10Z"),
        ("end", "2020-01-01T01:00:14+01:00"),
    ]);
    let p = ask(&s, &f).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(nums(&p), range(10, 14));
    assert_eq!((p.count, p.index, p.complete), (Some(5), Some(0), true));
    // Paging within the window: index counts from the window's start.
    let p = ask(
        &s,
        &format!("{f}{}", set("<max>2</max><after>1011</after>")),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(nums(&p), vec![12, 13]);
    assert_eq!((p.index, p.complete), (Some(2), false));
}

#[test]
fn extended_ids_and_id_ranges() {
    let (_d, s) = open();
    fill(&s);
    let p = ask(&s, &form(&[("after-id", "1010"), ("before-id", "1015")]))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(nums(&p), range(11, 14));
    assert_eq!((p.count, p.index), (Some(4), Some(0)));
    let ids = "<x xmlns='jabber:x:data' type='submit'><field var='ids'><value>1007</value><value>1003</value><value>1100</value></field></x>";
    let p = ask(&s, ids).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(nums(&p), vec![3, 7, 100]);
    assert!(p.complete);
}

#[test]
fn unknown_ids_are_item_not_found() {
    let (_d, s) = open();
    fill(&s);
    for q in [
        set("<after>999</after>"),
        set("<before>2000</before>"),
        set("<after>not-ours</after>"),
        // Another owner's id is not in this archive.
        set("<after>5000</after>"),
        form(&[("after-id", "1")]),
        form(&[("before-id", "5000")]),
        form(&[("ids", "1001")]).replace(
            "<value>1001</value>",
            "<value>1001</value><value>77</value>",
        ),
    ] {
        assert_eq!(ask(&s, &q), Err(QueryError::UnknownId), "{q}");
    }
}

#[test]
fn refusals_by_kind() {
    let (_d, s) = open();
    fill(&s);
    let cases = [
        (set("<index>3</index>"), QueryError::NotImplemented),
        (set("<max>many</max>"), QueryError::BadRequest),
        (form(&[("with", "@@")]), QueryError::BadRequest),
        (form(&[("start", "2020-01-01")]), QueryError::BadRequest),
        (
            form(&[("include-groupchat", "true")]),
            QueryError::NotImplemented,
        ),
    ];
    let many: String = (1..=251).map(|i| format!("<value>{i}</value>")).collect();
    let many = format!("<x xmlns='jabber:x:data'><field var='ids'>{many}</field></x>");
    let cases = cases.into_iter().chain([(many, QueryError::TooLarge)]);
    for (q, want) in cases {
        assert_eq!(ask(&s, &q), Err(want.clone()), "{q}");
    }
    assert_eq!(
        QueryError::TooLarge.condition(),
        StanzaErrorCondition::PolicyViolation
    );
    let p = ask(&s, &set("<max>250</max>")).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.rows.len(), 120);
    // Past the limit the page is cut to it, not refused.
    for max in ["251", "1000000000"] {
        let q = parse(&set(&format!("<max>{max}</max>"))).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(q.max, MamOptions::default().max_page as usize, "{max}");
    }
}

#[test]
fn counts_stop_at_the_cap() {
    let (_d, s) = open();
    let n = COUNT_CAP as i64 + 10;
    let rows: Vec<_> = (1..=n)
        .map(|i| test_row(OWNER, i, "b@x", i, "<message><body>x</body></message>"))
        .collect();
    s.mam_append(&rows).unwrap_or_else(|e| panic!("{e}"));
    // Forward from the start: the index is small, the count past the cap.
    let p = ask(&s, &set("<max>5</max>")).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!((p.index, p.count), (Some(0), None));
    // The last page: both past the cap.
    let p = ask(&s, &set("<max>5</max><before/>")).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!((p.index, p.count, p.last), (None, None, Some(n)));
    // A narrower result set is counted exactly again.
    let p =
        ask(&s, &form(&[("after-id", &(n - 20).to_string())])).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!((p.index, p.count), (Some(0), Some(20)));
    assert_eq!(
        s.mam_count_upto(OWNER, &MamFilter::default(), 7)
            .unwrap_or_else(|e| panic!("{e}")),
        7
    );
}
