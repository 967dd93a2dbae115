fn main() {
    print!("{}", meshery_operator::api::crds_yaml());
}
