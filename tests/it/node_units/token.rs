use shoal_node::http::token::*;

#[test]
fn tokens_are_long_printable_words_compared_whole() {
    assert!(parse("short").is_none());
    assert!(parse("has a space inside it").is_none());
    assert_eq!(
        parse("0123456789abcdef").as_deref(),
        Some("0123456789abcdef")
    );
    assert!(same(b"0123456789abcdef", b"0123456789abcdef"));
    assert!(!same(b"0123456789abcdeX", b"0123456789abcdef"));
    assert!(!same(b"0123456789abcdef0", b"0123456789abcdef"));
}
