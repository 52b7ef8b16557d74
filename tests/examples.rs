//! The files the README offers to copy are valid as they are.

use backspace::repo_settings::RepoSettings;

#[test]
fn the_example_repository_settings_parse() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/backspace.yml");
    let text = std::fs::read_to_string(path).expect("examples/backspace.yml");
    let s = RepoSettings::parse(&text).expect("the example is valid");
    assert_eq!(s.setup, vec!["npm ci".to_owned()]);
    assert_eq!(s.test.as_deref(), Some("npm test"));
    assert!(s
        .instructions
        .as_deref()
        .is_some_and(|i| i.contains("strict mode")));
    assert_eq!(
        (s.max_turns, s.label.as_deref()),
        (Some(40), Some("backspace"))
    );
    assert_eq!(
        s.network_allow().to_string(),
        "registry.npmjs.org, *.cdn.example.com"
    );
    assert!(s.agent_network());
    // The commented-out image line shows the key without changing the default.
    assert_eq!(s.image, None);
    let with_image = text.replace("# image:", "image:");
    let s = RepoSettings::parse(&with_image).expect("the example with its image line");
    assert_eq!(s.image.as_deref(), Some("backspace-sandbox:latest"));
}
