#!/usr/bin/env node
'use strict'
// smtp-oauth-transport's command line (doctor, send); it lives in lib/cli/.
const { main } = require('../lib/cli/main.js')

if (require.main === module) {
  main(process.argv.slice(2), process.env).then((code) => {
    process.exitCode = code
  })
}

module.exports = { main }
