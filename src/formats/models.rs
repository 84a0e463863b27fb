//! Model lists in each format's shape: what `GET /v1/models` (and Gemini's `models`) answers a
//! client of that format. The shapes are the dialects' ([`super::dialect::Dialect::model_list`]);
//! Anthropic's paging is here.

/// A page of Anthropic's model list, from its query (`limit` 1 to 1,000, default 20;
/// `after_id` or `before_id`, exclusive).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page<'a> {
    /// Most models on the page.
    pub limit: Option<usize>,
    /// Models after this id.
    pub after_id: Option<std::borrow::Cow<'a, str>>,
    /// Models before this id.
    pub before_id: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> Page<'a> {
    /// Reads the page from a query string; a `limit` outside 1 to 1,000 is an error.
    pub fn from_query(query: Option<&'a str>) -> Result<Self, String> {
        let mut page = Page::default();
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*name {
                "limit" => {
                    let limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|limit| (1..=1000).contains(limit))
                        .ok_or("limit must be an integer from 1 to 1000")?;
                    page.limit = Some(limit);
                }
                "after_id" => page.after_id = Some(value),
                "before_id" => page.before_id = Some(value),
                _ => {}
            }
        }
        Ok(page)
    }

    /// The ids of `sorted` on this page, and whether more lie beyond it.
    pub fn of<'s>(&self, sorted: &'s [&'s str]) -> (&'s [&'s str], bool) {
        let limit = self.limit.unwrap_or(20);
        if let Some(before) = &self.before_id {
            let end = sorted.partition_point(|id| *id < before.as_ref());
            let start = end.saturating_sub(limit);
            return (&sorted[start..end], start > 0);
        }
        let start = self.after_id.as_ref().map_or(0, |after| {
            sorted.partition_point(|id| *id <= after.as_ref())
        });
        let end = (start + limit).min(sorted.len());
        (&sorted[start..end], end < sorted.len())
    }
}
