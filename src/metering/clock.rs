//! The gateway's wall clock and UTC calendar arithmetic for the limit windows: which day and
//! month a moment falls in, and how long until each resets. The arithmetic is integer-only and
//! allocation-free, because it runs on every request.

/// Unix time in milliseconds: the one wall clock the limit windows, the ledger, provider
/// health and answer timestamps read (0 if the system clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Milliseconds in a minute: the requests-per-minute window.
pub const MINUTE_MS: u64 = 60_000;
/// Milliseconds in a day.
pub const DAY_MS: u64 = 86_400_000;

/// A UTC calendar day as (year, month 1..=12, day 1..=31).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day {
    /// Year.
    pub year: i32,
    /// Month, 1..=12.
    pub month: u8,
    /// Day of the month, 1..=31.
    pub day: u8,
}

impl Day {
    /// The UTC day a unix time in milliseconds falls in.
    pub fn of(unix_ms: u64) -> Self {
        let (year, month, day) = civil_from_days((unix_ms / DAY_MS) as i64);
        Self { year, month, day }
    }

    /// `2026-11-25`: the key of the tokens-per-day counters and the ledger's day column.
    pub fn key(self) -> String {
        let mut key = self.month_key();
        key.push('-');
        push_two_digits(&mut key, self.day);
        key
    }

    /// `2026-11`: the key of the monthly budget counters.
    ///
    /// Both keys are written digit by digit, as `format!("{:04}-{:02}")` would print them:
    /// every request makes two, and the formatting machinery cost ~1,000 instructions each
    /// (callgrind).
    pub fn month_key(self) -> String {
        let mut key = String::with_capacity(10);
        let mut digits = itoa::Buffer::new();
        let year = digits.format(self.year);
        // Years from a u64 of milliseconds since 1970 are never negative; `{:04}` pads.
        key.extend(std::iter::repeat_n('0', 4usize.saturating_sub(year.len())));
        key.push_str(year);
        key.push('-');
        push_two_digits(&mut key, self.month);
        key
    }
}

/// A month (1..=12) or a day of the month (1..=31), as two digits.
fn push_two_digits(out: &mut String, value: u8) {
    out.push(char::from(b'0' + value / 10 % 10));
    out.push(char::from(b'0' + value % 10));
}

/// Milliseconds from `unix_ms` to the next UTC midnight (when tokens/day resets).
pub fn until_next_day(unix_ms: u64) -> u64 {
    DAY_MS - unix_ms % DAY_MS
}

/// Milliseconds from `unix_ms` to the first moment of the next UTC month (when budgets reset).
pub fn until_next_month(unix_ms: u64) -> u64 {
    let today = Day::of(unix_ms);
    let (year, month) = if today.month == 12 {
        (today.year + 1, 1)
    } else {
        (today.year, today.month + 1)
    };
    let next = days_from_civil(year, month, 1) as u64 * DAY_MS;
    next.saturating_sub(unix_ms)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01; the inverse of [`civil_from_days`].
fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_months_match_the_calendar() {
        // 2026-11-25T14:00:00Z
        let t = 1_795_615_200_000;
        assert_eq!(Day::of(t).key(), "2026-11-25");
        // Written digit by digit, the keys are what `format!` printed, far into the future
        // (a year of more than four digits) too.
        for days in (0..3_000_000u64).step_by(997).chain([u64::MAX / DAY_MS]) {
            let day = Day::of(days * DAY_MS);
            let printed = format!("{:04}-{:02}-{:02}", day.year, day.month, day.day);
            assert_eq!(day.key(), printed);
            assert_eq!(day.month_key(), printed[..printed.len() - 3]);
        }
        assert_eq!(Day::of(t).month_key(), "2026-11");
        assert_eq!(Day::of(0).key(), "1970-01-01");
        // Leap day and the last millisecond of a year.
        assert_eq!(Day::of(1_709_164_800_000).key(), "2024-02-29");
        assert_eq!(Day::of(1_735_689_599_999).key(), "2024-12-31");
        assert_eq!(Day::of(1_735_689_600_000).key(), "2025-01-01");
    }

    #[test]
    fn resets_land_on_the_next_midnight_and_month() {
        let t = 1_795_615_200_000; // 14:00 UTC
        assert_eq!(until_next_day(t), 10 * 3_600_000);
        // 2026-12-01T00:00:00Z is 5 days 10 hours later.
        assert_eq!(until_next_month(t), 5 * DAY_MS + 10 * 3_600_000);
        // December rolls into January.
        let december = 1_796_083_200_000 + DAY_MS; // 2026-12-02T00:00Z
        assert_eq!(Day::of(december).key(), "2026-12-02");
        assert_eq!(until_next_month(december), 30 * DAY_MS);
    }

    #[test]
    fn civil_round_trips_for_every_day_of_four_centuries() {
        for days in -146_097..146_097 * 2 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
