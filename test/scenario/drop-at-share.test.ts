import { dropoutMatrix } from './matrix.js';

dropoutMatrix('share');
