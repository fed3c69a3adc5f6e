fn main() {
    println!("datamesh");
}
