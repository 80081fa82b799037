use shoal_jobs::scratch::free_bytes;
use shoal_node::storage::space::*;
use std::io;

#[test]
fn the_reserve_compares_with_the_filesystem_s_free_space() {
    let dir = tempfile::tempdir().unwrap();
    let free = free_bytes(dir.path()).unwrap();
    assert!(free > 0);
    assert!(Reserve::new(dir.path(), 0).check().is_ok());
    let over = (free >> 20) + 1024;
    let e = Reserve::new(dir.path(), over).check().unwrap_err();
    assert_eq!(e.reserve_mib, over);
    assert!(e.to_string().starts_with("disk full: "), "{e}");
    assert!(shoal_jobs::error::is_disk_full(
        &io::Error::from_raw_os_error(libc::ENOSPC)
    ));
}
