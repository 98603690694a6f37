fn main() {
    println!("chordal: work in progress");
}
