//! The few vector operations Vivaldi needs, on plain slices.

pub(crate) fn magnitude(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

pub(crate) fn magnitude_of_difference(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// The unit vector from `to` towards `from` and the distance between them.
/// Coincident points get a random direction (from `random`, values in
/// [0, 1)) and a distance of zero, so they can separate.
pub(crate) fn unit_vector_at(
    from: &[f64],
    to: &[f64],
    mut random: impl FnMut() -> f64,
) -> (Vec<f64>, f64) {
    let diff: Vec<f64> = from.iter().zip(to).map(|(a, b)| a - b).collect();
    let mag = magnitude(&diff);
    if mag > crate::ZERO_THRESHOLD {
        return (diff.iter().map(|x| x / mag).collect(), mag);
    }
    let dir: Vec<f64> = diff.iter().map(|_| random() - 0.5).collect();
    let m = magnitude(&dir);
    if m > crate::ZERO_THRESHOLD {
        return (dir.iter().map(|x| x / m).collect(), 0.0);
    }
    let mut unit = vec![0.0; diff.len()];
    if let Some(first) = unit.first_mut() {
        *first = 1.0;
    }
    (unit, 0.0)
}
