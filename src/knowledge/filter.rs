//! Metadata filters on retrieval: which passages may answer this customer.
//!
//! * `audience`: internal passages never answer customers; that filter is
//!   the index's own (`TantivyIndex::including_internal`, off unless
//!   `pipeline.answer_from_internal`), not part of [`Filter`], so no caller
//!   can forget it.
//! * `locale`: the customer's language is *preferred*: passages in it (and
//!   passages with no locale) are searched first; when none matches, the
//!   whole KB is searched, so a question in a language the KB lacks is still
//!   answered from what it has.
//! * `labels`: a brand or product line chosen by the widget's `data-brand`
//!   (bound into the conversation, one of `retriever.brands`) or else by
//!   the channel (`[retriever.labels]`, by provider or channel name). A
//!   brand replaces the channel's labels. A passage matches
//!   when it carries one of the labels, or carries none (it is about every
//!   brand). An empty list filters nothing.
//!
//! Front matter supplies them: `locale` (or `lang`), and `labels`,
//! `brand`, `product` (comma-separated), all compared lower-cased.

use std::collections::BTreeMap;

/// The value indexed for a passage without a locale or without labels.
pub const NONE: &str = "_none";

/// What the customer's question may be answered from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The customer's language (`es`, or `pt-br`); preferred, not required.
    pub locale: Option<String>,
    /// Brand or product labels; passages with another label are excluded.
    pub labels: Vec<String>,
}

impl Filter {
    /// Whether it filters anything.
    pub fn is_empty(&self) -> bool {
        self.locale.is_none() && self.labels.is_empty()
    }

    /// The filter for a ticket: its language, and its brand when the
    /// conversation was opened for one, else the labels configured for its
    /// provider (`zendesk`, `widget`…) or, failing that, its channel
    /// (`email`, `helpdesk`, `widget`).
    pub fn for_ticket(
        language: Option<&str>,
        brand: Option<&str>,
        provider: &str,
        channel: &str,
        labels: &BTreeMap<String, Vec<String>>,
    ) -> Self {
        let labels = match brand.and_then(normalize) {
            Some(brand) => vec![brand],
            None => labels
                .get(provider)
                .or_else(|| labels.get(channel))
                .map(|ls| ls.iter().filter_map(|l| normalize(l)).collect())
                .unwrap_or_default(),
        };
        Self {
            locale: language.and_then(normalize),
            labels,
        }
    }
}

/// A label or locale as indexed: trimmed, lower-cased, `_` as `-` in
/// locales; `None` when empty.
pub fn normalize(s: &str) -> Option<String> {
    let s = s
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .to_lowercase()
        .replace('_', "-");
    // `_` becomes `-`, so no normalized value can be the `_none` marker;
    // the marker itself written in front matter means nothing.
    (!s.is_empty() && s != "-none").then_some(s)
}

/// The terms a locale is indexed under: itself and its language
/// (`pt-br` → `pt-br`, `pt`), so a customer detected as `pt` finds `pt-br`.
pub fn locale_terms(locale: &str) -> Vec<String> {
    let mut out = vec![locale.to_owned()];
    if let Some((lang, _)) = locale.split_once('-') {
        out.push(lang.to_owned());
    }
    out
}

/// Labels from front-matter values (`labels`, `brand`, `product`): comma
/// separated, an optional `[…]`.
pub fn labels_from(values: &[String]) -> Vec<String> {
    let mut out: Vec<String> = values
        .iter()
        .flat_map(|v| {
            v.trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
        })
        .filter_map(normalize)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_get_their_language_and_their_channel_labels() {
        let labels = BTreeMap::from([
            ("widget".to_owned(), vec!["Acme".to_owned()]),
            (
                "helpdesk".to_owned(),
                vec!["acme".to_owned(), "Pro ".to_owned()],
            ),
            ("zendesk".to_owned(), vec!["bolt".to_owned()]),
        ]);
        let f = Filter::for_ticket(Some("ES"), None, "widget", "widget", &labels);
        assert_eq!(f.locale.as_deref(), Some("es"));
        assert_eq!(f.labels, ["acme"]);
        // The conversation's brand comes before the channel's labels.
        let f = Filter::for_ticket(None, Some("Bolt"), "widget", "widget", &labels);
        assert_eq!(f.labels, ["bolt"]);
        assert_eq!(
            Filter::for_ticket(None, Some("nova"), "postmark", "email", &labels).labels,
            ["nova"]
        );
        // The provider's entry wins over the channel's.
        assert_eq!(
            Filter::for_ticket(None, None, "zendesk", "helpdesk", &labels).labels,
            ["bolt"]
        );
        assert_eq!(
            Filter::for_ticket(None, None, "freshdesk", "helpdesk", &labels).labels,
            ["acme", "pro"]
        );
        assert!(Filter::for_ticket(None, None, "postmark", "email", &labels).is_empty());
    }

    fn kb() -> crate::knowledge::TantivyIndex {
        use crate::knowledge::markdown::parse;
        crate::knowledge::TantivyIndex::in_memory(&[
            parse(
                "en/refunds.md",
                "---\nlocale: en-US\nbrand: acme\n---\n# Refunds\n\nAcme refunds annual plans within 14 days.",
            ),
            parse(
                "es/reembolsos.md",
                "---\nlocale: es-ES\nbrand: acme\n---\n# Reembolsos\n\nAcme reembolsa los planes anuales en 14 días; reembolsos por tarjeta.",
            ),
            parse(
                "bolt/refunds.md",
                "---\nlocale: en\nlabels: [bolt, pro]\n---\n# Refunds\n\nBolt refunds annual plans within 30 days.",
            ),
            parse(
                "shared/contact.md",
                "# Contact\n\nWrite to support for refunds of any plan.",
            ),
        ])
        .unwrap()
    }

    fn docs(hits: &[crate::knowledge::Passage]) -> Vec<&str> {
        hits.iter().map(|h| h.doc_id.as_str()).collect()
    }

    #[test]
    fn labels_keep_other_brands_out_and_unlabelled_passages_in() {
        let idx = kb();
        let all = idx.search("refunds annual plans", 10).unwrap();
        assert!(docs(&all).contains(&"bolt/refunds.md"));
        let acme = Filter {
            labels: vec!["acme".into()],
            ..Filter::default()
        };
        let hits = idx
            .search_filtered("refunds annual plans", 10, &acme)
            .unwrap();
        assert!(
            !docs(&hits).contains(&"bolt/refunds.md"),
            "{:?}",
            docs(&hits)
        );
        assert!(docs(&hits).contains(&"en/refunds.md"));
        assert!(
            docs(&hits).contains(&"shared/contact.md"),
            "unlabelled passages are for everyone"
        );
        // A filter decides what may match, never the order: the same
        // passages score the same.
        for h in &hits {
            let same = all.iter().find(|a| a.doc_id == h.doc_id).unwrap();
            assert!(
                (same.score - h.score).abs() < 1e-5,
                "{} {} vs {}",
                h.doc_id,
                h.score,
                same.score
            );
        }
        let bolt = Filter {
            labels: vec!["pro".into()],
            ..Filter::default()
        };
        let hits = idx
            .search_filtered("refunds annual plans", 10, &bolt)
            .unwrap();
        assert_eq!(docs(&hits)[0], "bolt/refunds.md");
        assert!(
            !docs(&hits)
                .iter()
                .any(|d| d.starts_with("en/") || d.starts_with("es/"))
        );
    }

    #[test]
    fn the_customers_language_is_preferred_when_the_kb_has_it() {
        let idx = kb();
        // "14" and "acme" are in both languages; a Spanish customer gets the
        // Spanish article first, an English one never sees it.
        let es = Filter {
            locale: Some("es".into()),
            labels: vec!["acme".into()],
        };
        let hits = idx.search_filtered("acme 14 reembolsos", 10, &es).unwrap();
        assert_eq!(docs(&hits)[0], "es/reembolsos.md");
        assert!(!docs(&hits).contains(&"en/refunds.md"), "{:?}", docs(&hits));
        let en = Filter {
            locale: Some("en".into()),
            labels: vec!["acme".into()],
        };
        let hits = idx.search_filtered("acme 14 refunds", 10, &en).unwrap();
        assert!(
            !docs(&hits).contains(&"es/reembolsos.md"),
            "{:?}",
            docs(&hits)
        );
        // A language the KB lacks: the whole KB answers.
        let de = Filter {
            locale: Some("de".into()),
            ..Filter::default()
        };
        let hits = idx.search_filtered("acme refunds", 10, &de).unwrap();
        assert!(!hits.is_empty());
        // Internal passages stay out whatever the filter.
        let idx = crate::knowledge::TantivyIndex::in_memory(&[crate::knowledge::markdown::parse(
            "agents/es.md",
            "---\nlocale: es\naudience: internal\n---\n# Reembolsos internos\n\nCódigo de reembolso 4242.",
        )])
        .unwrap();
        let es = Filter {
            locale: Some("es".into()),
            ..Filter::default()
        };
        assert!(
            idx.search_filtered("código reembolso", 5, &es)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn front_matter_values_normalize() {
        assert_eq!(
            labels_from(&["[Acme, Bolt]".into(), " acme ,,".into(), "_none".into()]),
            ["acme", "bolt"]
        );
        assert_eq!(locale_terms("pt-br"), ["pt-br", "pt"]);
        assert_eq!(normalize("en_US").as_deref(), Some("en-us"));
        assert_eq!(normalize("  "), None);
    }
}
