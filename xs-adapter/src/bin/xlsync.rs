fn main() {
    println!("xlsync: under construction");
}
