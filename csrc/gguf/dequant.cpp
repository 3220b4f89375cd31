// PLACEHOLDER until dequant lands.
