//! Spec §1.3 `vsn` negotiation and §13 case 28.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use phx_protocol::{Serializer, VsnError};

#[test]
fn absent_vsn_is_v1() {
    assert_eq!(Serializer::negotiate(None), Ok(Serializer::V1));
}

#[test]
fn accepted_versions() {
    for (vsn, want) in [
        ("1.0.0", Serializer::V1),
        ("1.0.7", Serializer::V1),
        ("1.0.1-beta", Serializer::V1),
        ("2.0.0", Serializer::V2),
        ("2.0.1", Serializer::V2),
        ("2.0.99", Serializer::V2),
        ("2.0.0+build.5", Serializer::V2),
        ("2.0.1-rc.1", Serializer::V2),
        ("2.0.1-rc-1+b", Serializer::V2),
    ] {
        assert_eq!(Serializer::negotiate(Some(vsn)), Ok(want), "{vsn}");
    }
}

#[test]
fn spec_13_case_28_bad_vsn() {
    for vsn in [
        "3.0.0",
        "2.1.0",
        "abc",
        "2",
        "2.0",
        "",
        "1.1.0",
        "0.9.0",
        "2.0.0.0",
        "02.0.0",
        "2.00.0",
        "2.0.00",
        "2.0.x",
        " 2.0.0",
        "2.0.0 ",
        "2.0.0-",
        "2.0.0-rc..1",
        "2.0.0-01",
        "2.0.0+",
        "2.0.0+b_d",
        "v2.0.0",
        "2.0.-1",
        "99999999999999999999999.0.0",
    ] {
        assert_eq!(
            Serializer::negotiate(Some(vsn)),
            Err(VsnError(vsn.to_owned())),
            "{vsn:?} must be refused"
        );
    }
}

#[test]
fn pre_releases_of_the_base_version_are_below_the_range() {
    // `~> 2.0.0` is `>= 2.0.0 and < 2.1.0-0`: 2.0.0-rc.1 sorts below 2.0.0.
    assert!(Serializer::negotiate(Some("2.0.0-rc.1")).is_err());
    assert!(Serializer::negotiate(Some("1.0.0-alpha")).is_err());
    assert!(Serializer::negotiate(Some("2.1.0-rc.1")).is_err());
}
