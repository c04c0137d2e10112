//! UTC times written as chrono's serde writes them (RFC 3339 with `Z`, and
//! a fraction of 0, 3, 6 or 9 digits), without going through a formatter
//! one character at a time: staging writes two times per record.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};

/// Writes `at` as chrono's `Serialize` does.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buffer = [0u8; 30];
    match write(at, &mut buffer) {
        Some(text) => serializer.serialize_str(text),
        // Years of other than four digits and leap seconds: chrono's own.
        None => at.serialize(serializer),
    }
}

/// Writes an optional time as [`serialize`] does, and `None` as null.
pub fn serialize_option<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    struct Time<'a>(&'a DateTime<Utc>);

    impl Serialize for Time<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serialize(self.0, serializer)
        }
    }

    match at {
        Some(at) => serializer.serialize_some(&Time(at)),
        None => serializer.serialize_none(),
    }
}

/// `at` in `buffer`; `None` for a year outside 0 ..= 9999 or a leap second.
/// The longest, with nine fraction digits, is 30 bytes.
fn write<'b>(at: &DateTime<Utc>, buffer: &'b mut [u8; 30]) -> Option<&'b str> {
    let year = at.year();
    let nanos = at.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return None;
    }
    let (fraction, fraction_digits) = if nanos == 0 {
        (0, 0)
    } else if nanos.is_multiple_of(1_000_000) {
        (nanos / 1_000_000, 3)
    } else if nanos.is_multiple_of(1_000) {
        (nanos / 1_000, 6)
    } else {
        (nanos, 9)
    };

    let mut len = 0;
    digits(buffer, &mut len, year as u32, 4);
    for (n, before) in [
        (at.month(), b'-'),
        (at.day(), b'-'),
        (at.hour(), b'T'),
        (at.minute(), b':'),
        (at.second(), b':'),
    ] {
        buffer[len] = before;
        len += 1;
        digits(buffer, &mut len, n, 2);
    }
    if fraction_digits > 0 {
        buffer[len] = b'.';
        len += 1;
        digits(buffer, &mut len, fraction, fraction_digits);
    }
    buffer[len] = b'Z';
    std::str::from_utf8(&buffer[..=len]).ok()
}

/// Writes the last `count` decimal digits of `n` at `len`, moving it on.
fn digits(buffer: &mut [u8; 30], len: &mut usize, n: u32, count: u32) {
    for i in (0..count).rev() {
        buffer[*len] = b'0' + (n / 10u32.pow(i) % 10) as u8;
        *len += 1;
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};

    use super::*;

    #[derive(Serialize)]
    struct Times {
        #[serde(serialize_with = "serialize")]
        at: DateTime<Utc>,
        #[serde(serialize_with = "serialize_option")]
        maybe: Option<DateTime<Utc>>,
    }

    #[derive(Serialize)]
    struct ChronoTimes {
        at: DateTime<Utc>,
        maybe: Option<DateTime<Utc>>,
    }

    #[test]
    fn times_are_written_as_chrono_writes_them() {
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .expect("a leap second")
            .and_utc();
        let mut times = vec![
            Utc.timestamp_opt(0, 0).single().expect("epoch"),
            leap,
            Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0)
                .single()
                .expect("1 BC"),
            Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0)
                .single()
                .expect("10000"),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
                .single()
                .expect("9999"),
        ];
        // A fixed xorshift stream of times from year 0 to 9999, with whole,
        // milli-, micro- and nanosecond fractions.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for i in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let seconds = (state % 315_537_897_600) as i64 - 62_167_219_200;
            let nanos = (state >> 40) as u32 % 1_000_000_000;
            let nanos = match i % 4 {
                0 => 0,
                1 => nanos / 1_000_000 * 1_000_000,
                2 => nanos / 1_000 * 1_000,
                _ => nanos,
            };
            times.push(
                Utc.timestamp_opt(seconds, nanos)
                    .single()
                    .expect("in range"),
            );
        }
        let own = times
            .iter()
            .filter(|at| write(at, &mut [0; 30]).is_some())
            .count();
        assert_eq!(
            own,
            times.len() - 3,
            "all but the three odd times are written here"
        );
        for (i, at) in times.iter().enumerate() {
            let maybe = (i % 2 == 0).then_some(*at);
            let ours = serde_json::to_string(&Times { at: *at, maybe }).expect("serialises");
            let chrono =
                serde_json::to_string(&ChronoTimes { at: *at, maybe }).expect("serialises");
            assert_eq!(ours, chrono);
        }
    }
}
