//! The timeline of fires across every project's schedules, and the collisions in it: fires of
//! different projects close together whose projects use the same service (two jobs hitting the
//! OpenAI rate limit at once).

/// One fire of one schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fire {
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub project: String,
    pub task: String,
    /// The services the project declares keys for (`openai`, `anthropic`, …).
    pub services: Vec<String>,
}

/// Fires of different projects within the window that share a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collision {
    pub service: String,
    /// Indices into the fires, in time order.
    pub fires: Vec<usize>,
}

/// Finds collisions in `fires` (sorted by time): for each service, groups of fires no more than
/// `window_ms` apart that involve at least two projects.
pub fn collisions(fires: &[Fire], window_ms: i64) -> Vec<Collision> {
    let mut services: Vec<&str> = fires.iter().flat_map(|f| f.services.iter().map(String::as_str)).collect();
    services.sort_unstable();
    services.dedup();
    let mut out = Vec::new();
    for service in services {
        let using: Vec<usize> = (0..fires.len()).filter(|i| fires[*i].services.iter().any(|s| s == service)).collect();
        let mut group: Vec<usize> = Vec::new();
        let flush = |group: &mut Vec<usize>, out: &mut Vec<Collision>| {
            let mut projects: Vec<&str> = group.iter().map(|i| fires[*i].project.as_str()).collect();
            projects.sort_unstable();
            projects.dedup();
            if projects.len() > 1 {
                out.push(Collision { service: service.to_string(), fires: std::mem::take(group) });
            }
            group.clear();
        };
        for i in using {
            if let Some(&last) = group.last()
                && fires[i].at - fires[last].at > window_ms
            {
                flush(&mut group, &mut out);
            }
            group.push(i);
        }
        flush(&mut group, &mut out);
    }
    out.sort_by_key(|c| (fires[c.fires[0]].at, c.service.clone()));
    merge_same_fires(out)
}

/// One collision per group of fires: the same fires sharing a service and a resource (often
/// of the same name, `openai` and `resource openai`) are one collision naming both.
fn merge_same_fires(found: Vec<Collision>) -> Vec<Collision> {
    let mut out: Vec<Collision> = Vec::with_capacity(found.len());
    for c in found {
        match out.iter_mut().find(|o| o.fires == c.fires) {
            Some(o) => {
                let resource_of_service = c.service.strip_prefix("resource ") == Some(o.service.as_str());
                o.service = if resource_of_service {
                    format!("{} (service and resource)", o.service)
                } else {
                    format!("{}, {}", o.service, c.service)
                };
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fire(at: i64, project: &str, services: &[&str]) -> Fire {
        Fire {
            at,
            project: project.into(),
            task: "t".into(),
            services: services.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_same_fires_sharing_a_service_and_its_resource_are_one_collision() {
        let fires = vec![
            fire(0, "trading", &["openai", "resource openai"]),
            fire(60_000, "cortana", &["openai", "resource openai", "discord"]),
            fire(90_000, "trading", &["discord"]),
        ];
        let c = collisions(&fires, 300_000);
        assert_eq!(
            c,
            vec![
                Collision { service: "openai (service and resource)".into(), fires: vec![0, 1] },
                Collision { service: "discord".into(), fires: vec![1, 2] },
            ]
        );
    }

    #[test]
    fn flags_different_projects_sharing_a_service_close_together() {
        let fires = vec![
            fire(0, "trading", &["openai", "discord"]),
            fire(60_000, "cortana", &["openai"]),
            fire(120_000, "image-workflow", &[]),
            fire(3_600_000, "trading", &["openai"]),
            fire(3_660_000, "trading", &["openai"]),
        ];
        let c = collisions(&fires, 300_000);
        assert_eq!(
            c,
            vec![Collision { service: "openai".into(), fires: vec![0, 1] }],
            "the same project twice is not a collision"
        );
        assert!(collisions(&fires, 30_000).is_empty(), "a minute apart is outside a 30 s window");
    }
}
