//! URLs with their passwords taken out, for logs and error messages.

/// `url` with the password of its userinfo replaced by `***`
/// (`amqp://guest:s3cret@host/` becomes `amqp://guest:***@host/`); a URL
/// without a password is returned as it is.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact("amqp://guest:s3cret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(
            redact("redis://:pw@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("amqp://user@host/"), "amqp://user@host/");
        // An '@' before the scheme separator is not userinfo.
        assert_eq!(redact("a@b://host"), "a@b://host");
    }
}
