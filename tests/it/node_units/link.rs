use shoal_node::storage::blobs::Blobs;
use std::io::Write;

fn stored(blobs: &Blobs, key: &str, bytes: &[u8]) -> std::path::PathBuf {
    let mut w = blobs.create(key).unwrap();
    w.write_all(bytes).unwrap();
    w.commit().unwrap();
    blobs.path(key).unwrap()
}

fn crc(bytes: &[u8]) -> u32 {
    let mut sum = shoal_jobs::checksum::Running::default();
    sum.update(bytes);
    sum.value()
}

#[test]
fn a_link_is_taken_only_for_that_object_of_a_store_of_this_user_with_its_size_and_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let a = Blobs::open(dir.path().join("a/blobs")).unwrap();
    let b = Blobs::open(dir.path().join("b/blobs")).unwrap();
    let bytes = b"the quick brown fox\n";
    let from = stored(&a, "j-1/seg-00000", bytes);
    let key = "j-1/seg-00000";
    let len = bytes.len() as u64;

    // Another size, another checksum: refused, and nothing is left behind.
    assert!(b.link_from(key, &from, len + 1, crc(bytes)).is_err());
    let wrong = b.link_from(key, &from, len, crc(b"other")).unwrap_err();
    // It says what was asked, never what the file holds.
    let said = wrong.to_string();
    assert!(said.contains(&format!("{:08x}", crc(b"other"))), "{said}");
    assert!(!said.contains(&format!("{:08x}", crc(bytes))), "{said}");
    // A file that is not that object of a store: refused before it is linked.
    let secret = dir.path().join("secret");
    std::fs::write(&secret, bytes).unwrap();
    assert!(b.link_from(key, &secret, len, crc(bytes)).is_err());
    let other_key = stored(&a, "j-1/seg-00001", bytes);
    assert!(b.link_from(key, &other_key, len, crc(bytes)).is_err());
    assert!(b
        .link_from(
            key,
            std::path::Path::new("a/blobs/j-1/seg-00000"),
            len,
            crc(bytes)
        )
        .is_err());
    // A symbolic link named as the object: the link is not followed.
    let sneaky = Blobs::open(dir.path().join("c/blobs")).unwrap();
    std::fs::create_dir_all(dir.path().join("c/blobs/j-1")).unwrap();
    std::os::unix::fs::symlink(&secret, dir.path().join("c/blobs").join(key)).unwrap();
    assert!(b
        .link_from(key, &sneaky.path(key).unwrap(), len, crc(bytes))
        .is_err());
    // Another user's file named as the object: that user could write it after the
    // checksum. Only root can give a file away; elsewhere this case says so and is not
    // run.
    let foreign = Blobs::open(dir.path().join("d/blobs")).unwrap();
    let theirs = stored(&foreign, key, bytes);
    // SAFETY: geteuid has no preconditions; chown takes a NUL-terminated path.
    if unsafe { libc::geteuid() } == 0 {
        let c = std::ffi::CString::new(theirs.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
        let refused = b.link_from(key, &theirs, len, crc(bytes)).unwrap_err();
        assert!(refused.to_string().contains("not owned"), "{refused}");
    } else {
        eprintln!("not root: the case of another user's file is not run");
    }
    assert!(!b.contains(key));
    assert_eq!(
        std::fs::read_dir(dir.path().join("b/blobs/j-1"))
            .unwrap()
            .count(),
        0,
        "a refused link leaves no file"
    );

    // The object itself: taken, and it outlives the sender's copy.
    b.link_from(key, &from, len, crc(bytes))
        .unwrap()
        .commit()
        .unwrap();
    a.remove_job("j-1");
    assert!(!from.exists());
    assert_eq!(std::fs::read(b.path(key).unwrap()).unwrap(), bytes);
}
