module example.com/lance-offsets/go_store

go 1.19
