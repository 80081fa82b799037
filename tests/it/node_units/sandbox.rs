use shoal_jobs::sandbox::TaskUser;
use shoal_node::sandbox::*;
use std::os::unix::fs::PermissionsExt;

fn someone() -> TaskUser {
    TaskUser {
        name: "someone".into(),
        uid: 4242,
        gid: 4343,
    }
}

#[test]
fn a_directory_others_may_not_cross_is_found_on_the_way() {
    let d = tempfile::tempdir().unwrap();
    let locked = d.path().join("locked");
    let data = locked.join("inner/data");
    std::fs::create_dir_all(&data).unwrap();
    for p in [d.path(), &locked, &locked.join("inner"), &data] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let u = someone();
    // What lies above the test's directory is the machine's; judge from there down.
    let above = first_uncrossable(d.path(), &u);
    assert_eq!(first_uncrossable(&data, &u), above);
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    if above.is_none() {
        assert_eq!(first_uncrossable(&data, &u), Some(locked.clone()));
    }
    assert!(!crosses(0o700, 0, 0, &u));
    assert!(crosses(0o700, u.uid, 0, &u));
    assert!(crosses(0o710, 0, u.gid, &u));
    assert!(
        !crosses(0o701, 0, u.gid, &u),
        "the group's bit decides for the group"
    );
    assert!(crosses(0o701, 0, 0, &u));
}
