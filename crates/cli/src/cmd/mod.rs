//! One module per subcommand.

pub mod bench;
pub mod bench_attention;
pub mod codegen;
pub mod info;
pub mod plan;
pub mod quantize;
pub mod report;

/// The entries of a comma-separated list of presets or configs, where a config's own commas (`vq<8,12,2>`) stay
/// inside its angle brackets.
pub fn split_configs(list: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0i32);
    for ch in list.chars() {
        match ch {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth <= 0 => {
                out.push(std::mem::take(&mut cur).trim().to_string());
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    out.push(cur.trim().to_string());
    out.retain(|s| !s.is_empty());
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn config_lists_split_outside_angle_brackets() {
        assert_eq!(
            super::split_configs("quip4, vq<8,16,2>:e8p:scale,aqlm3"),
            ["quip4", "vq<8,16,2>:e8p:scale", "aqlm3"]
        );
        assert_eq!(super::split_configs("gptvq2"), ["gptvq2"]);
    }
}
