module airside/resources

go 1.22
