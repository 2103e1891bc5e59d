package importer

// GuardFault is guardFault, for the test that faults on a mapping.
var GuardFault = guardFault
